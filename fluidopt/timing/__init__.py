"""GPU timing: how long one engine step takes, behind one interface (:mod:`fluidopt.timing.protocol`).

Kinds, one module each, registered in :mod:`fluidopt.timing.registry`:

- ``affine`` (:mod:`~fluidopt.timing.affine`): the maximum of affine pieces (the paper's model);
- ``measured`` (:mod:`~fluidopt.timing.measured`): attention-aware, composed from measured operators;
- ``vidur-predictor`` (:mod:`~fluidopt.timing.predictor`): Vidur's execution-time predictor.

Fitters that turn measurements into timing objects live in :mod:`fluidopt.timing.fit`, apart
from the runtime classes.
"""

from fluidopt.timing.affine import PIECE_KEYS, AffinePiece, AffineTiming
from fluidopt.timing.protocol import FluidBatch, TimingModel
from fluidopt.timing.registry import (
    kind_index,
    register_timing_module,
    timing_class,
    timing_from_dict,
    timing_kinds,
    timing_of_pieces,
)

__all__ = [
    "PIECE_KEYS",
    "AffinePiece",
    "AffineTiming",
    "FluidBatch",
    "TimingModel",
    "kind_index",
    "register_timing_module",
    "timing_class",
    "timing_from_dict",
    "timing_kinds",
    "timing_of_pieces",
]
