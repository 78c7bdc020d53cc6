"""Choosing the HTTP transport under httpx.

httpx's own transport (httpcore + anyio) costs about 1.5 ms of CPU per call
on this kind of machine; ``httpx-aiohttp`` keeps the httpx API and request
model but moves the bytes with aiohttp, at roughly a third of that (measured
in ``bench/llm_layer.py``).  Workers make many concurrent calls from one
event loop, so they use aiohttp when it is installed.  Set
``HIERAMAS_HTTP_TRANSPORT=httpx`` to force httpx's own transport.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import httpx

from hieramas.llm.types import EndpointSpec

__all__ = ["TransportFactory", "default_transport_factory", "httpx_transport"]

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


def _aiohttp_transport(endpoint: EndpointSpec) -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(limits=_pool_limits(endpoint))


def default_transport_factory() -> TransportFactory | None:
    """The aiohttp-backed transport when available and not disabled; else ``None`` (httpx's own)."""
    choice = os.environ.get(ENV, "auto").lower()
    if choice == "httpx":
        return None
    if importlib.util.find_spec("httpx_aiohttp") is None:
        if choice == "aiohttp":
            raise RuntimeError(f"{ENV}=aiohttp but the httpx-aiohttp package is not installed")
        return None
    return _aiohttp_transport
