"""The feed's secret token: a file with mode 0600 that never appears in logs or error messages.

The token is the only thing guarding the feed URL, so the file holding it must not be readable by other
users. Under systemd's LoadCredential the file lives in $CREDENTIALS_DIRECTORY, which systemd makes
read-only and private to the service; there its mode is systemd's business and we only read it.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from connectors.atomic import fsync_directory

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
    _make_private_parents(path.parent)
    token = _new_token()
    tmp = _write_private_temp(path, token)
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
    _make_private_parents(path.parent)
    token = _new_token()
    tmp = _write_private_temp(path, token)
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
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot read the feed token file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenFileError(f"{path}: the feed token file is not a regular file")
        if st.st_mode & 0o077 and not _is_credential(path):
            raise TokenFileError(
                f"{path}: the feed token file is readable or writable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); fix it with `chmod 600 {path}`, "
                "or make a new token with `circleback feed rotate`"
            )
        raw = os.read(fd, MAX_LENGTH + 64)
    finally:
        os.close(fd)
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


def _write_private_temp(path: Path, token: str) -> Path:
    """Write `token` to a fresh temp file beside `path`, mode exactly 0600 whatever the umask."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        # The umask can only clear bits from 0o600; fchmod makes the mode exact (a umask of 0o277 would
        # otherwise give 0o400, which we could not rotate later without help).
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _make_private_parents(directory: Path) -> None:
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


def _is_credential(path: Path) -> bool:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not creds:
        return False
    try:
        return Path(path).resolve().is_relative_to(Path(creds).resolve())
    except OSError:
        return False
