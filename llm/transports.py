"""Choosing the HTTP transport under httpx.

Workers keep the httpx API and request model but not httpx's own transport
(httpcore + anyio), which costs several times the CPU per call of the
alternatives (``bench/llm_layer.py``), while a worker makes many concurrent
calls from one event loop.  By default (``auto``) a ``http://`` endpoint (a
model server on this machine or the LAN) gets the lean HTTP/1.1 transport
(:mod:`hieramas.llm.h1_transport`) and a ``https://`` one aiohttp
(:mod:`hieramas.llm.aiohttp_transport`).  ``HIERAMAS_HTTP_TRANSPORT`` forces
one: ``h1``, ``aiohttp`` or ``httpx``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx

from hieramas.llm.types import EndpointSpec

__all__ = [
    "TransportFactory",
    "aiohttp_transport",
    "auto_transport",
    "default_transport_factory",
    "h1_transport",
    "httpx_transport",
]

TransportFactory = Callable[[EndpointSpec], httpx.AsyncBaseTransport]
ENV = "HIERAMAS_HTTP_TRANSPORT"


def _pool_limits(endpoint: EndpointSpec) -> httpx.Limits:
    """One keep-alive pool of ``max_concurrency`` connections per endpoint."""
    return httpx.Limits(
        max_connections=endpoint.max_concurrency,
        max_keepalive_connections=endpoint.max_concurrency,
    )


def httpx_transport(endpoint: EndpointSpec) -> httpx.AsyncBaseTransport:
    """httpx's own transport (httpcore), the fallback when no factory is chosen."""
    return httpx.AsyncHTTPTransport(limits=_pool_limits(endpoint))


def aiohttp_transport(endpoint: EndpointSpec) -> httpx.AsyncBaseTransport:
    """aiohttp under httpx, plain bodies read whole (needs the aiohttp package)."""
    from hieramas.llm.aiohttp_transport import BufferedAiohttpTransport

    return BufferedAiohttpTransport(_pool_limits(endpoint))


def h1_transport(endpoint: EndpointSpec) -> httpx.AsyncBaseTransport:
    """The lean HTTP/1.1 transport (``http://`` endpoints only)."""
    from hieramas.llm.h1_transport import H1Transport

    return H1Transport(_pool_limits(endpoint), httpx.Timeout(endpoint.timeout_s))


def auto_transport(endpoint: EndpointSpec) -> httpx.AsyncBaseTransport:
    """The lean transport for ``http://`` endpoints, aiohttp for ``https://`` ones."""
    if endpoint.base_url.startswith("http://"):
        return h1_transport(endpoint)
    return aiohttp_transport(endpoint)


def default_transport_factory() -> TransportFactory | None:
    """The factory ``$HIERAMAS_HTTP_TRANSPORT`` names: ``auto`` (the default), ``h1``,
    ``aiohttp`` or ``httpx`` (``None``: httpx's own transport)."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    factories: dict[str, TransportFactory | None] = {
        "auto": auto_transport,
        "h1": h1_transport,
        "aiohttp": aiohttp_transport,
        "httpx": None,
    }
    if choice not in factories:
        raise ValueError(f"{ENV} must be one of {', '.join(factories)}, not {choice!r}")
    return factories[choice]
