"""Reading and writing TOML files with clear errors and atomic writes."""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from fluidopt.errors import InputError

# Version of the layout of every file fluidopt writes (profiles, workloads, thresholds, figure
# configs, sweep cache entries); readers accept files without it (written before it existed).
SCHEMA_VERSION = 1


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML file, raising :class:`InputError` naming the file when it is malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError("path", str(path), f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"byte {exc.start}", "is not UTF-8 text (TOML files must be UTF-8)") from None
    return parse_toml(text, source=str(path))


def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse TOML text; ``source`` names it in the error message."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(source, "<TOML>", f"is not valid TOML ({exc})") from None


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialise a mapping to TOML text."""
    return tomli_w.dumps(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and a failure leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_toml(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write a mapping as TOML, atomically."""
    return write_text_atomic(path, dumps_toml(data))
