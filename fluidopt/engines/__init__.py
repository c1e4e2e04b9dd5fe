"""Real inference engines next to fluidopt's models of them (optional: ``pip install -e ".[engine]"``).

- :mod:`~fluidopt.engines.vllm_parity`: vLLM's own V1 ``Scheduler`` (its CPU build suffices) driven
  step by step on seeded scenarios, every step and request compared with fluidopt's ``vllm-v1``.
- :mod:`~fluidopt.engines.gate`: a WAIT-family policy's compiled selection function deciding an
  engine's step from the engine's own state; :mod:`~fluidopt.engines.vllm`: the scheduler classes
  for ``--scheduler-cls`` built on it; :mod:`~fluidopt.engines.policy_parity`: their check against
  the simulated policies.
- :mod:`~fluidopt.engines.engine_runs`: whole vLLM engines on the CPU, written as plain runs.
- :mod:`~fluidopt.engines.launch`: the ``vllm serve`` line (no vLLM import);
  :mod:`~fluidopt.engines.serve`: ``fluidopt-vllm``, vLLM's command line behind the import guard.

Only :mod:`~fluidopt.engines.vllm` and :mod:`~fluidopt.engines.serve` import vLLM when imported; the
rest imports it inside the functions that drive it.  The command line uses :mod:`launch` and, for
``engine-check``, the parity modules; nothing else in fluidopt imports this package.
"""
