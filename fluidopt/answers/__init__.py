"""The product's answers to a user's question about a deployment.

- :mod:`~fluidopt.answers.recommend`: which vLLM / SGLang settings, from the fluid model, validated;
- :mod:`~fluidopt.answers.capacity`: the largest rate each policy sustains under a latency target;
- :mod:`~fluidopt.answers.replay`: how close the simulator comes to a real engine run;
- :mod:`~fluidopt.answers.slo`: whether a latency target can be met at all on a profile;
- :mod:`~fluidopt.answers.report`: the main job (``fluidopt report``), the answers above first.

They sit on top of the fluid core, threshold design and the simulator (and use the experiment
machinery's runners); the paper's experiments and figures live in :mod:`fluidopt.experiments`.
"""
