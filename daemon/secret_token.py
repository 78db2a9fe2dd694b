"""The feed's secret token: a file with mode 0600 that never appears in logs or error messages.

The token is the only thing guarding the feed URL, so the file holding it must not be readable by other
users. Under systemd's LoadCredential the file lives in $CREDENTIALS_DIRECTORY, which systemd makes
read-only and private to the service; there its mode is systemd's business and we only read it.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from connectors.atomic import fsync_directory
from daemon.private_file import make_private_parents, read_private_file, write_private_temp

TOKEN_BYTES = 32  # secrets.token_urlsafe(32) -> 43 characters
MIN_LENGTH = 43  # what 32 random bytes encode to; shorter tokens are guessable sooner than we promise
MAX_LENGTH = 512
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")  # URL-safe base64 alphabet: needs no escaping in a URL path


class TokenFileError(RuntimeError):
    """A token file that cannot be used; the message names the file and what to do about it."""


def load_or_create_token(path: Path) -> str:
    """Read the token at `path`, creating a fresh one (mode 0600, parent 0700) if there is none yet."""
    path = Path(path)
    if _is_credential(path):
        try:
            return read_token(path)
        except FileNotFoundError:
            raise TokenFileError(
                f"{path}: no such credential; check the service's LoadCredential=feed-token:... line"
            ) from None
    try:
        return read_token(path)
    except FileNotFoundError:
        pass
    make_private_parents(path.parent)
    token = _new_token()
    tmp = write_private_temp(path, token)
    try:
        # link() refuses to overwrite, so two processes racing to create the token agree on one of them.
        os.link(tmp, path)
    except FileExistsError:
        return read_token(path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return token


def rotate_token(path: Path) -> str:
    """Replace the token at `path` with a new one, atomically; the old URL stops working."""
    path = Path(path)
    if _is_credential(path):
        raise TokenFileError(
            f"{path}: this token comes from systemd's LoadCredential (read-only); "
            "rotate it by replacing the credential's source file and restarting the service"
        )
    make_private_parents(path.parent)
    token = _new_token()
    tmp = write_private_temp(path, token)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return token


def read_token(path: Path) -> str:
    """Read and validate the token at `path`: FileNotFoundError if absent, TokenFileError if unusable."""
    path = Path(path)
    raw = read_private_file(
        path,
        what="the feed token file",
        limit=MAX_LENGTH + 64,
        error=TokenFileError,
        # Under LoadCredential systemd owns the file's mode (and keeps it private to the service).
        shared_ok=_is_credential(path),
        remedy=", or make a new token with `circleback feed rotate`",
    )
    return _validate(raw, path)


def _validate(raw: bytes, path: Path) -> str:
    # Error messages describe the content but never quote it: a near-miss token is still a secret.
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise TokenFileError(f"{path}: the feed token file holds non-ASCII bytes") from None
    token = text.strip()  # systemd credentials and editors often add a trailing newline
    if not token:
        raise TokenFileError(f"{path}: the feed token file is empty; make one with `circleback feed rotate`")
    if not _TOKEN_RE.fullmatch(token):
        raise TokenFileError(
            f"{path}: the feed token may only contain letters, digits, '-' and '_' (URL-safe base64)"
        )
    if len(token) < MIN_LENGTH:
        raise TokenFileError(
            f"{path}: the feed token is {len(token)} characters long, at least {MIN_LENGTH} are needed "
            "(32 random bytes); make one with `circleback feed rotate`"
        )
    if len(token) > MAX_LENGTH:
        raise TokenFileError(f"{path}: the feed token is longer than {MAX_LENGTH} characters")
    return token


def _new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _is_credential(path: Path) -> bool:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not creds:
        return False
    try:
        return Path(path).resolve().is_relative_to(Path(creds).resolve())
    except OSError:
        return False
