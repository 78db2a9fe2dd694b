"""Replace a file's contents all at once: readers see the old bytes or the new bytes, never a mix.

The data goes to a temporary file in the target's own directory (so the final rename stays on one file
system and is atomic), is flushed to disk, and only then renamed over the target. If anything fails on the
way, the temporary file is removed and the target is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

# The feed and plan name real people and carry notes about them: private unless the person widens it.
DEFAULT_MODE = 0o600


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` atomically.

    `mode=None` keeps the permissions of an existing file (someone may have tightened them on purpose) and
    uses 0600 for a new one; an explicit `mode` is always applied (for example 0600 for secrets).
    """
    target = Path(path)
    final_mode = mode if mode is not None else _existing_mode(target)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            # Set the mode before any byte is written, so secrets never sit in a wider file.
            os.fchmod(handle.fileno(), final_mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_directory(target.parent)


def _existing_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return DEFAULT_MODE


def fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some platforms cannot open a directory, which is not an error."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
