"""A fingerprint of the sources compiled into the simulator's kernel.

numba caches each compiled function keyed on its own file, but the kernel links in the shared
helpers, every registered policy's selection function, every registered timing kind's step
function and the layout constants; a change to any of them, or a module registered from
outside the package, must recompile the kernel.  The fingerprint hashes those files' text in
the registries' order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fluidopt.sim.policies import POLICY_MODULES
from fluidopt.timing.registry import TIMING_MODULES

_SIM = Path(__file__).resolve().parent
_SOURCES = ("layout.py", "kernel.py", "sources.py", "bundles.py", "policies/_compiled.py", "../_jit.py")


def sources_fingerprint() -> int:
    """A 61-bit number that changes whenever a compiled source of the simulator changes."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_SIM / name).read_bytes())
    for module in (*POLICY_MODULES, *TIMING_MODULES):
        path = Path(module.__file__)
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return int.from_bytes(digest.digest()[:8], "little") % (2**61)
