"""Writing secrets to disk: owner-only permissions from the first byte."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` readable and writable by the owner only (0600).

    The file is created with mode 0600 (never briefly wider) and its mode is
    reset to 0600 if it already existed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path
