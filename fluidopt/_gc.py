"""Garbage-collector handling for start-up phases that only build long-lived objects.

Importing numba and loading the compiled simulator from its on-disk cache create about a
million objects (numba's typing and target registries) that live as long as the process.
Python's cyclic collector runs its full passes many times while they are built, and scans
them again at interpreter exit (the console entry point ``fluidopt.cli.run`` freezes them
first), which together cost about as much as the loading itself (measured in
``benchmarks/bench_startup.py``).  Nothing built in these phases is garbage, so pausing the
collector loses nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block; restore its previous state after.

    Reference counting still frees everything it can; only the cycle detector waits.  Nested
    uses are safe: an inner block never re-enables a collector an outer one paused.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
