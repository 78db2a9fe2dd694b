"""Fetch a calendar from a file or URL, with conditional requests and a private copy of the last good one.

Secret calendar addresses (Google's "secret address in iCal format", Outlook's published calendars) carry
the secret in the path, so no message here shows more of a URL than its scheme and host (`redact`).
Calendars are private: cached copies are written atomically with mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from connectors.address_guard import AddressGuard, RefusedAddress
from connectors.atomic import write_atomic
from connectors.base import ConnectorError
from connectors.ics_blocks import not_a_calendar

if TYPE_CHECKING:
    import httpx

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
_HTTP_SCHEMES = {"http": "http", "https": "https", "webcal": "https", "webcals": "https"}
_DNS_FAILURE = re.compile(
    r"name or service not known|nodename nor servname|temporary failure in name resolution|"
    r"getaddrinfo|no address associated|name resolution",
    re.IGNORECASE,
)
_USER_AGENT = "circleback/0.1 (calendar reader)"


@dataclass(frozen=True)
class FetchResult:
    """One fetch. `not_modified`: the content equals the last good copy (a 304, or the same bytes)."""

    data: bytes
    from_cache: bool
    not_modified: bool
    etag: str | None = None
    last_modified: str | None = None
    sha256: str = ""
    fetched_at: datetime | None = None  # when these bytes were last fetched successfully
    warning: str | None = None  # a non-fatal problem, e.g. the cache could not be written


class UnreadableFile(Exception):
    """A local file that is not there, not a regular file, or too large; the message names the path."""

    def __init__(self, path: Path, reason: str, *, retryable: bool = True) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.retryable = retryable


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: Path, mode: int) -> UnreadableFile:
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return UnreadableFile(path, f"is {kind}, not a regular file", retryable=False)


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, never more than `max_bytes`.

    Devices, FIFOs and sockets are refused before they are even opened (opening some devices does
    something): /dev/zero never ends and a FIFO without a writer blocks forever. The size is counted
    while reading, since st_size is 0 for files that are not empty (devices, /proc). O_NONBLOCK keeps
    the open from waiting should a FIFO take the file's place between the check and the open.
    """
    try:
        before = os.stat(path).st_mode
        if not stat.S_ISREG(before):
            raise _not_regular(path, before)
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1024 * 1024, max_bytes + 1 - size)):
            size += len(chunk)
            if size > max_bytes:
                raise UnreadableFile(path, f"is larger than {_mib(max_bytes)}")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        os.close(fd)


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _os_error(path: Path, exc: OSError) -> UnreadableFile:
    if isinstance(exc, FileNotFoundError):
        return UnreadableFile(path, "no such file")
    if isinstance(exc, PermissionError):
        return UnreadableFile(path, "permission denied")
    if isinstance(exc, NotADirectoryError):
        return UnreadableFile(path, "no such file (a part of the path is not a directory)")
    return UnreadableFile(path, str(exc.strerror or exc))


def redact(location: str) -> str:
    """Scheme and host of a URL, with the path, query and credentials hidden; local paths as they are."""
    try:
        parts = urlsplit(location.strip())
    except ValueError:
        return "(an address that cannot be parsed)"
    scheme = parts.scheme.lower()
    if scheme not in _HTTP_SCHEMES:
        return location if scheme != "file" else unquote(parts.path)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    hidden = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{scheme}://{host}{port}{hidden}"


def http_url(location: str) -> str | None:
    """The URL to GET for an http(s):// or webcal:// location (webcal means https), or None if local."""
    parts = urlsplit(location.strip())
    scheme = _HTTP_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        return None
    return parts._replace(scheme=scheme).geturl()


def local_path(location: str) -> Path:
    parts = urlsplit(location.strip())
    if parts.scheme.lower() == "file":
        return Path(unquote(parts.path))
    return Path(location).expanduser()


class Fetcher:
    """Reads sources and keeps the last good copy of each under `cache_dir`.

    With a `guard` (organisation mode, for the calendars people give themselves) only http(s) and webcal
    addresses are read, never files, and every connection, redirects' included, goes only where the guard
    allows (connectors.address_guard); without one (the personal mode) the owner's own files and
    addresses are read as they are."""

    def __init__(
        self,
        cache_dir: Path,
        timeout: float = 20.0,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        guard: AddressGuard | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.clock = clock
        self.guard = guard

    def fetch(self, name: str, location: str) -> FetchResult:
        """The current content; raises ConnectorError(name, reason) when there is none to be had."""
        try:
            url = http_url(location)
            parts = urlsplit(location.strip())
            scheme = parts.scheme.lower()
            if url is not None and (not parts.hostname or parts.port == 0 or not parts.netloc.isprintable()):
                raise ValueError("no usable host")
        except ValueError:
            raise ConnectorError(
                name, f"{redact(location)} is not a valid address", retryable=False
            ) from None
        if url is not None:
            return self._fetch_http(name, location, url)
        if self.guard is not None:
            raise ConnectorError(
                name, "only https:// and webcal:// addresses are read for people, not files", retryable=False
            )
        if scheme not in ("", "file") and len(scheme) > 1:  # one letter: a Windows drive, not a scheme
            raise ConnectorError(name, f"unsupported address scheme {scheme!r}", retryable=False)
        data = self._read_file(name, local_path(location))
        return self._accept(name, location, data, etag=None, last_modified=None)

    def cached(self, name: str, location: str) -> FetchResult | None:
        """The last good copy, or None if there is none."""
        data_path, meta_path, key = self._paths(location)
        meta = _read_meta(meta_path)
        if meta.get("key") != key:
            # Not provably this location's copy (or none at all): never pass it off as this calendar.
            return None
        try:
            data = data_path.read_bytes()
        except OSError:
            return None
        digest = hashlib.sha256(data).hexdigest()
        if meta.get("sha256") != digest:
            # The copy outlived its metadata (a crash between the two writes): usable, but not for
            # conditional requests.
            meta = {}
        return FetchResult(
            data=data,
            from_cache=True,
            not_modified=False,
            etag=_str_or_none(meta.get("etag")),
            last_modified=_str_or_none(meta.get("last_modified")),
            sha256=digest,
            fetched_at=_time_or_none(meta.get("fetched_at")),
        )

    def _read_file(self, name: str, path: Path) -> bytes:
        try:
            data = read_regular_file(path, self.max_bytes)
        except UnreadableFile as exc:
            raise ConnectorError(name, str(exc), retryable=exc.retryable) from None
        reason = not_a_calendar(data)
        if reason is not None:
            raise ConnectorError(name, f"{path} is {reason}")
        return data

    def _fetch_http(self, name: str, location: str, url: str) -> FetchResult:
        # Imported here: the configuration and the CLI use this module's address helpers, and an HTTP
        # client on their start-up would cost more than most commands take.
        import httpx

        shown = redact(url)
        previous = self.cached(name, location)
        headers = {"Accept": "text/calendar, text/plain;q=0.5, */*;q=0.1", "User-Agent": _USER_AGENT}
        if previous is not None:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        conditional = "If-None-Match" in headers or "If-Modified-Since" in headers
        deadline = time.monotonic() + self.timeout
        transport: httpx.BaseTransport | None = None
        if self.guard is not None:
            from connectors.guarded_http import GuardedTransport

            # With a transport of its own httpx uses no proxy from the environment: the guard sees the
            # calendar's own address, not a proxy's.
            transport = GuardedTransport(self.guard)
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=True, transport=transport) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code == 304:
                    # Only an answer to validators this very copy sent: anything else would pass off
                    # some other content as this calendar's.
                    if previous is None or not conditional:
                        raise ConnectorError(
                            name, f"{shown} answered 304 Not Modified to an unconditional GET"
                        )
                    return FetchResult(
                        data=previous.data,
                        from_cache=True,
                        not_modified=True,
                        etag=previous.etag,
                        last_modified=previous.last_modified,
                        sha256=previous.sha256,
                        fetched_at=previous.fetched_at,
                    )
                if not 200 <= response.status_code < 300:
                    status = response.status_code
                    raise ConnectorError(
                        name,
                        f"HTTP {status} {response.reason_phrase} from {shown}".rstrip(),
                        retryable=status >= 500 or status in (408, 429),
                    )
                data = self._body(name, shown, response, deadline)
                etag = response.headers.get("ETag")
                last_modified = response.headers.get("Last-Modified")
        except RefusedAddress as exc:
            raise ConnectorError(name, f"{shown}: refused: {exc}", retryable=False) from None
        except httpx.TimeoutException:
            raise ConnectorError(name, f"timed out after {self.timeout:g} s fetching {shown}") from None
        except httpx.ConnectError as exc:
            text = _scrub(str(exc), url)
            if _DNS_FAILURE.search(text):
                host = urlsplit(url).hostname or "?"
                raise ConnectorError(name, f"cannot resolve host {host} (DNS): {text}") from None
            raise ConnectorError(name, f"cannot connect to {shown}: {text}") from None
        except httpx.InvalidURL:
            raise ConnectorError(name, f"{shown} is not a valid address", retryable=False) from None
        except httpx.TooManyRedirects:
            raise ConnectorError(name, f"too many redirects fetching {shown}") from None
        except httpx.HTTPError as exc:
            raise ConnectorError(name, f"fetching {shown} failed: {_scrub(str(exc), url)}") from None
        reason = not_a_calendar(data)
        if reason == "an HTML page, not a calendar":
            raise ConnectorError(name, f"{shown} returned HTML, not a calendar")
        if reason is not None:
            raise ConnectorError(name, f"{shown} returned {reason}")
        return self._accept(name, location, data, etag=etag, last_modified=last_modified, previous=previous)

    def _body(self, name: str, shown: str, response: httpx.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise ConnectorError(name, f"{shown} sent more than {_mib(self.max_bytes)}")
            if time.monotonic() > deadline:
                # httpx's timeout is per read; a server dripping bytes must not hold a cycle forever.
                raise ConnectorError(name, f"timed out after {self.timeout:g} s fetching {shown}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _accept(
        self,
        name: str,
        location: str,
        data: bytes,
        *,
        etag: str | None,
        last_modified: str | None,
        previous: FetchResult | None = None,
    ) -> FetchResult:
        digest = hashlib.sha256(data).hexdigest()
        if previous is not None:
            same = previous.sha256 == digest
        else:
            # Only the metadata: re-reading and hashing a large copy on every read of a local file is waste.
            data_path, meta_path, key = self._paths(location)
            meta = _read_meta(meta_path)
            same = meta.get("key") == key and meta.get("sha256") == digest and data_path.exists()
        now = self.clock()
        warning = None
        try:
            self._store(name, location, data if not same else None, digest, etag, last_modified, now)
        except OSError as exc:
            warning = f"{name}: cannot keep a copy in {self.cache_dir}: {exc.strerror or exc}"
        return FetchResult(
            data=data,
            from_cache=False,
            not_modified=same,
            etag=etag,
            last_modified=last_modified,
            sha256=digest,
            fetched_at=now,
            warning=warning,
        )

    def _store(
        self,
        name: str,
        location: str,
        data: bytes | None,
        digest: str,
        etag: str | None,
        last_modified: str | None,
        now: datetime,
    ) -> None:
        data_path, meta_path, key = self._paths(location)
        make_private_dirs(self.cache_dir)
        if data is not None:
            write_atomic(data_path, data, mode=0o600)
        meta = {
            "key": key,
            "source": name,
            "location": redact(location),
            "sha256": digest,
            "size": data_path.stat().st_size,
            "etag": etag,
            "last_modified": last_modified,
            "fetched_at": now.isoformat(),
        }
        write_atomic(meta_path, json.dumps(meta, indent=2).encode(), mode=0o600)

    def _paths(self, location: str) -> tuple[Path, Path, str]:
        """The copy, its metadata, and the key that ties both to this one location and no other."""
        identity = cache_identity(location)
        key = hashlib.sha256(identity.encode()).hexdigest()
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", _readable_part(identity)).strip("_")[:40] or "source"
        base = f"{slug}-{key[:32]}"
        return self.cache_dir / f"{base}.ics", self.cache_dir / f"{base}.json", key


def cache_identity(location: str) -> str:
    """What makes two locations one calendar: the address as fetched, or the file's absolute path."""
    try:
        url = http_url(location)
    except ValueError:
        return location.strip()
    return url if url is not None else os.path.abspath(local_path(location))


def _readable_part(identity: str) -> str:
    """A file's name or an address's host, to make the cache directory legible; never a secret."""
    try:
        parts = urlsplit(identity)
        if parts.scheme in ("http", "https"):
            return parts.hostname or ""
    except ValueError:
        return ""
    return Path(identity).name


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parent with mode 0700 (calendars are private); existing
    directories are left as their owner set them."""
    missing: list[Path] = []
    current = directory
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # mkdir's mode is narrowed by the umask, never widened: make it exact


def _read_meta(path: Path) -> dict[str, object]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _time_or_none(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _scrub(text: str, url: str) -> str:
    """Remove a URL's secret parts from a library's message, in case it quotes the URL."""
    text = text.replace(url, redact(url))
    parts = urlsplit(url)
    for secret in (parts.path, parts.query, parts.username, parts.password):
        if secret and len(secret) > 1:
            text = text.replace(secret, "…")
    return text


def _mib(size: int) -> str:
    mib = 1024 * 1024
    return f"{size / mib:g} MiB" if size >= mib else f"{size} bytes"
