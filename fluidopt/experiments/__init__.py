"""Experiments on top of the fluid model and the simulator: sweeps, tuning, capacity, asymptotics."""
