"""Files other processes read while we write them (policy, keys, certificates, reports, drift state)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: a reader (a gateway reloading
    its policy, a browser) sees the old file or the new one, never half of one. `mode` sets permissions first."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
