"""TLS for ``tls:host:port`` addresses. Imported only when TLS is used (``ssl`` costs
start-up time)."""

from __future__ import annotations

import ssl

from .._errors import ConnectError, TransportError
from ._errors import HANDSHAKE, transport_error

__all__ = ["client_context", "handshake_error", "handshake_failure"]


def client_context(
    tls: bool | ssl.SSLContext | None,
    *,
    cafile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """The SSLContext of a client: ``tls`` itself when it is one, else a default context
    (certificate and host name verification ON, system CAs or ``cafile``), with a client
    certificate for mutual TLS when ``certfile`` is given. ``insecure`` turns verification
    off (tests, diagnostics; never in production)."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def handshake_error(exc: BaseException) -> str:
    """A readable reason for a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def handshake_failure(address: str, exc: BaseException, timeout: float | None) -> TransportError:
    """The exception for a failed TLS handshake with ``address``: ``TransportTimeout`` when
    ``timeout`` (or the kernel's TCP timeout) expired, else ``ConnectError`` with the reason."""
    if isinstance(exc, TimeoutError):
        return transport_error(HANDSHAKE, address, exc, timeout)
    return ConnectError(0, f"TLS handshake with {address} failed: {handshake_error(exc)}")
