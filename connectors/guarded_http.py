"""An httpx transport whose every connection goes through an AddressGuard (connectors.address_guard).

httpx hands connections to httpcore, and httpcore opens them through a "network backend": this module's
backend resolves the host itself, has the guard check every address, and connects to a checked address
(never to the name, which could resolve elsewhere by then). TLS still verifies the certificate against the
host name: httpcore takes the name for SNI from the URL, not from the socket. Each redirect is a new
request, so its connection is checked too; a reused connection was checked when it was opened.

Imported only when a guarded fetch runs (httpx and httpcore are slow to import).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from connectors.address_guard import AddressGuard


class GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard
        self._plain = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.guard.resolve(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return self._plain.connect_tcp(
                    str(address), port, timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("a person's calendar cannot be read through a local socket")

    def sleep(self, seconds: float) -> None:
        self._plain.sleep(seconds)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's classes of the same name (what the fetcher catches)."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise _httpx_class(exc, httpx.TimeoutException)(str(exc)) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise _httpx_class(exc, httpx.TransportError)(str(exc)) from exc


def _httpx_class(exc: Exception, fallback: type[httpx.TransportError]) -> type[httpx.TransportError]:
    for cls in type(exc).__mro__:
        found = getattr(httpx, cls.__name__, None)
        if isinstance(found, type) and issubclass(found, httpx.TransportError):
            return found
    return fallback


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class GuardedTransport(httpx.BaseTransport):
    """httpx's default transport, less proxies and Unix sockets, with guarded connections."""

    def __init__(self, guard: AddressGuard) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=GuardedBackend(guard)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, Iterable)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
