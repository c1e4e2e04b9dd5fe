"""Real inference engines next to fluidopt's models of them (optional: ``pip install -e ".[engine]"``).

:mod:`fluidopt.engines.vllm_parity` drives vLLM's own V1 ``Scheduler`` (its CPU build suffices)
step by step on seeded scenarios and compares every step with fluidopt's ``vllm-v1`` policy.
Nothing here is imported by the rest of the package.
"""
