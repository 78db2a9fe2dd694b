"""The per-install secret that signs circleback's key markers: a file with mode 0600 in the state
directory, created on first use, never logged, never shown in an error message.

Every event circleback publishes carries its occurrence key twice (X-CIRCLEBACK-KEY and the last line of
the description) so that a copy in another calendar is recognised. Anyone can write such a line, and keys
are easy to guess (`touchpoint:<name>:<period>`), so only a key signed with this secret counts
(`connectors.ics_feed.sign_key`). Losing the file only means copies made before are no longer recognised.

Organisation mode keeps one secret per person in the database instead (daemon.org_secret): its replicas
share no files. Both keep the secret as 64 lower-case hex digits (`parse_marker_secret`).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from connectors.atomic import fsync_directory
from daemon.private_file import make_private_parents, read_private_file, write_private_temp
from daemon.secret_token import TokenFileError

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
    make_private_parents(path.parent)
    tmp = write_private_temp(path, new_marker_secret())
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
    raw = read_private_file(path, what="the marker secret", limit=1024, error=MarkerSecretError)
    return parse_marker_secret(raw, str(path))


def parse_marker_secret(raw: bytes, where: str) -> bytes:
    """The secret written as 64 lower-case hex digits; MarkerSecretError naming `where`, never the text."""
    text = raw.decode("ascii", errors="replace").strip()
    if not _HEX.fullmatch(text):
        raise MarkerSecretError(
            f"{where}: the marker secret is not 64 lower-case hexadecimal digits; delete the file to make a "
            "new one (copies of touchpoints made before are then no longer recognised)"
        )
    return bytes.fromhex(text)


def new_marker_secret() -> str:
    """A fresh secret, as the file (and the database) keep it: 64 lower-case hex digits."""
    return secrets.token_hex(SECRET_BYTES)
