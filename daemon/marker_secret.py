"""The per-install secret that signs circleback's key markers: a file with mode 0600 in the state
directory, created on first use, never logged, never shown in an error message.

Every event circleback publishes carries its occurrence key twice (X-CIRCLEBACK-KEY and the last line of
the description) so that a copy in another calendar is recognised. Anyone can write such a line, and keys
are easy to guess (`touchpoint:<name>:<period>`), so only a key signed with this secret counts
(`connectors.ics_feed.sign_key`). Losing the file only means copies made before are no longer recognised.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from connectors.atomic import fsync_directory
from daemon.secret_token import TokenFileError, _make_private_parents, _write_private_temp

FILE_NAME = "marker-secret"
SECRET_BYTES = 32
_HEX = re.compile(r"[0-9a-f]{64}")


class MarkerSecretError(TokenFileError):
    """The secret file cannot be used; the message names the file and what to do (never the content)."""


def marker_secret_path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE_NAME


def load_or_create_marker_secret(path: Path) -> bytes:
    """The secret at `path`, made (mode 0600, parents 0700) if there is none yet."""
    path = Path(path)
    try:
        return read_marker_secret(path)
    except FileNotFoundError:
        pass
    _make_private_parents(path.parent)
    tmp = _write_private_temp(path, secrets.token_hex(SECRET_BYTES))
    try:
        # link() never overwrites: two processes creating the secret at once agree on one of them.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return read_marker_secret(path)


def read_marker_secret(path: Path) -> bytes:
    """FileNotFoundError if absent, MarkerSecretError if unusable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise MarkerSecretError(f"{path}: cannot read the marker secret: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MarkerSecretError(f"{path}: the marker secret is not a regular file")
        if st.st_mode & 0o077:
            raise MarkerSecretError(
                f"{path}: the marker secret is readable or writable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); fix it with `chmod 600 {path}`"
            )
        raw = os.read(fd, 1024)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    if not _HEX.fullmatch(text):
        raise MarkerSecretError(
            f"{path}: the marker secret is not 64 lower-case hexadecimal digits; delete the file to make a "
            "new one (copies of touchpoints made before are then no longer recognised)"
        )
    return bytes.fromhex(text)
