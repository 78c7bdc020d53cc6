"""Choosing the HTTP transport under httpx.

httpx's own transport (httpcore + anyio) costs several times the CPU of
aiohttp per call on this kind of machine (measured in ``bench/llm_layer.py``),
and a worker makes many concurrent calls from one event loop.  So workers
keep the httpx API and request model but move the bytes with aiohttp
(:class:`hieramas.llm.aiohttp_transport.BufferedAiohttpTransport`).  Set
``HIERAMAS_HTTP_TRANSPORT=httpx`` to force httpx's own transport.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import httpx

from hieramas.llm.types import EndpointSpec

__all__ = ["TransportFactory", "aiohttp_transport", "default_transport_factory", "httpx_transport"]

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


def default_transport_factory() -> TransportFactory | None:
    """The aiohttp-backed transport when available and not disabled; else ``None`` (httpx's own)."""
    choice = os.environ.get(ENV, "auto").lower()
    if choice == "httpx":
        return None
    if importlib.util.find_spec("aiohttp") is None:
        if choice == "aiohttp":
            raise RuntimeError(f"{ENV}=aiohttp but the aiohttp package is not installed")
        return None
    return aiohttp_transport
