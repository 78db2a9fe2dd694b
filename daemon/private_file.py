"""Secrets kept in files of their own (the feed token, the key-marker secret): read, made and replaced
the same way, so a rule about them holds for every one.

- Read: a regular file only, mode 0600 or tighter (unless the caller knows another party guards it,
  systemd credentials), never more than a few bytes; the content is never part of an error message.
- Made: a temp file beside the target, mode exactly 0600, then linked or renamed into place; parents
  created 0700.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

# O_NONBLOCK: a FIFO put in the secret's place makes the open return at once (and fstat refuse it)
# instead of waiting for a writer forever.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def read_private_file(
    path: Path,
    *,
    what: str,
    limit: int,
    error: Callable[[str], Exception],
    shared_ok: bool = False,
    remedy: str = "",
) -> bytes:
    """Up to `limit` bytes of the private file at `path`.

    FileNotFoundError if it is absent; otherwise `error(message)` when it cannot be read, is not a regular
    file, or (unless `shared_ok`) other users may read or write it. `what` names it in messages ("the
    feed token file"); `remedy` is appended to the mode message (", or make a new one with ...")."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: {what} is not a regular file")
        if st.st_mode & 0o077 and not shared_ok:
            raise error(
                f"{path}: {what} is readable or writable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); fix it with `chmod 600 {path}`{remedy}"
            )
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_private_temp(path: Path, text: str) -> Path:
    """Write `text` and a newline to a fresh temp file beside `path`, mode exactly 0600 whatever the umask."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        # The umask can only clear bits from 0o600; fchmod makes the mode exact (a umask of 0o277 would
        # otherwise give 0o400, which could not be replaced later without help).
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def make_private_parents(directory: Path) -> None:
    """Create missing directories with mode 0700; existing ones are left as the admin set them."""
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)
