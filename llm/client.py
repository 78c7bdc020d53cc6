"""The production OpenAI-compatible chat client (``POST {base_url}/chat/completions``).

One httpx transport per endpoint (keep-alive pool), a semaphore
(``EndpointSpec.max_concurrency``) and an optional :mod:`aiolimiter` rate limit
per endpoint, tenacity retries with exponential backoff + jitter that honour
``Retry-After`` and never sleep past the caller's deadline, and a circuit
breaker per endpoint.  Every failure surfaces as :class:`LLMError`.  API keys are
read from the environment variable the endpoint names and never logged.

Requests are :class:`httpx.Request` objects sent straight through the endpoint's
transport (``AsyncBaseTransport.handle_async_request``).  The client needs none of
``httpx.AsyncClient``'s policy layer (cookies, redirects, auth flows, per-request
merging of defaults), which cost about a quarter of the CPU of a call
(``bench/llm_layer.py``, "HTTP paths"); URL, headers and timeouts are built once per endpoint.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import httpx
import msgspec
import structlog
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.wait import wait_base, wait_exponential, wait_random

from hieramas import __version__
from hieramas import metrics as prometheus
from hieramas.llm.breaker import BreakerState, CircuitBreaker
from hieramas.llm.cache import ResponseCache, cache_key
from hieramas.llm.errors import AttemptError, ReplayMissError
from hieramas.llm.metrics import EndpointMetrics
from hieramas.llm.tokens import estimate_prompt_tokens, estimate_tokens
from hieramas.llm.transports import TransportFactory, httpx_transport
from hieramas.llm.types import ChatRequest, ChatResult, EndpointSpec, LLMError
from hieramas.llm.wire import (
    Completion,
    EmbeddedError,
    StreamAccumulator,
    build_payload,
    error_detail,
    parse_completion,
    parse_retry_after,
)

__all__ = ["OpenAIChatClient", "RetryPolicy"]

log = structlog.get_logger(__name__)

_RETRYABLE_4XX = frozenset({408, 409, 425})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff between attempts (the number of retries is ``EndpointSpec.max_retries``).

    The n-th retry waits ``min(max_s, initial_s * 2**(n-1)) + uniform(0, jitter_s)``
    unless the server sent ``Retry-After``, which is honoured exactly; a
    ``Retry-After`` longer than ``max_retry_after_s`` ends the retries.
    """

    initial_s: float = 0.5
    max_s: float = 20.0
    jitter_s: float = 0.5
    max_retry_after_s: float = 60.0


class _Wait(wait_base):
    """Exponential backoff with jitter, overridden by the server's ``Retry-After``."""

    def __init__(self, policy: RetryPolicy) -> None:
        exponential = wait_exponential(multiplier=policy.initial_s, max=policy.max_s)
        self._backoff = exponential + wait_random(0, policy.jitter_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, AttemptError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._backoff(retry_state))


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, AttemptError) and exc.retryable


class _Endpoint:
    """Per-endpoint state: HTTP pool, limits, breaker, counters (and the secret, never shown)."""

    __slots__ = (
        "_secret",
        "breaker",
        "extensions",
        "headers",
        "limiter",
        "metrics",
        "semaphore",
        "spec",
        "transport",
        "url",
    )

    def __init__(
        self,
        spec: EndpointSpec,
        transport: httpx.AsyncBaseTransport,
        headers: dict[str, str],
        breaker: CircuitBreaker,
        secret: str | None,
    ) -> None:
        self.spec = spec
        self.url = httpx.URL(spec.base_url.rstrip("/") + "/chat/completions")
        self.transport = transport
        # normalised once, Host first as httpx puts it; Content-Length is added per request
        host = self.url.netloc.decode("ascii")
        self.headers = httpx.Headers({"Host": host, **headers})
        self.extensions = {"timeout": httpx.Timeout(spec.timeout_s).as_dict()}
        self.breaker = breaker
        self.semaphore = asyncio.Semaphore(spec.max_concurrency)
        self.limiter: AsyncLimiter | None = None
        rate = spec.rate_limit_per_s
        if rate is not None:
            burst = max(1.0, rate)
            self.limiter = AsyncLimiter(burst, burst / rate)
        self.metrics = EndpointMetrics()
        self._secret = secret

    def __repr__(self) -> str:
        return f"_Endpoint(name={self.spec.name!r}, url={self.url!r})"

    def redact(self, text: str) -> str:
        """``text`` with the API key (if any) masked."""
        return text.replace(self._secret, "***") if self._secret else text


class OpenAIChatClient:
    """:class:`~hieramas.llm.types.ChatClient` for any OpenAI-compatible server.

    ``endpoints`` registers endpoints by name (used by :meth:`complete`); ``chat``
    also accepts endpoints not registered up front.  ``cache`` enables
    record/replay (the client does not close it).  ``transport`` replaces the
    network (tests); ``transport_factory`` builds one transport per endpoint
    (see :mod:`hieramas.llm.transports`).  ``stream=True`` asks for server-sent events, so ``ttft_s``
    is the true time to the first content token (without it, time to the
    response headers); servers that ignore ``stream`` still work.  Call
    ``chat`` from one event loop.
    """

    def __init__(
        self,
        endpoints: Mapping[str, EndpointSpec] | None = None,
        *,
        cache: ResponseCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        transport_factory: TransportFactory | None = None,
        retry: RetryPolicy | None = None,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        app_name: str = "HieraMAS",
        app_url: str | None = None,
        stream: bool = False,
    ) -> None:
        self.endpoints: dict[str, EndpointSpec] = dict(endpoints or {})
        self.cache = cache
        self.retry = retry or RetryPolicy()
        self._transport = transport
        self._transport_factory = transport_factory
        self._wait = _Wait(self.retry)
        self._breaker_failures = breaker_failures
        self._breaker_reset_s = breaker_reset_s
        self._app_name = app_name
        self._app_url = app_url
        self._states: dict[str, _Endpoint] = {}  # the newest settings of each endpoint name
        self._by_spec: dict[EndpointSpec, _Endpoint] = {}  # every settings seen, until aclose
        self.stream = stream
        self._closed = False
        prometheus.track("llm", self)  # metrics() is read at scrape time

    def __repr__(self) -> str:
        return f"OpenAIChatClient(endpoints={sorted(self.endpoints)!r}, cache={self.cache!r})"

    async def __aenter__(self) -> OpenAIChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ public API

    async def complete(self, request: ChatRequest, *, deadline: float | None = None) -> ChatResult:
        """:meth:`chat` against the registered endpoint named by ``request.model.endpoint``."""
        endpoint = self.endpoints.get(request.model.endpoint)
        if endpoint is None:
            raise KeyError(
                f"unknown endpoint {request.model.endpoint!r} for model {request.model.name!r}"
            )
        return await self.chat(request, endpoint, deadline=deadline)

    async def chat(
        self, request: ChatRequest, endpoint: EndpointSpec, *, deadline: float | None = None
    ) -> ChatResult:
        """Run one call; ``deadline`` is an absolute ``time.monotonic()`` value.

        ``latency_s`` and ``ttft_s`` are measured from this call's start (queueing
        and retries included); ``model`` is the pool name ``request.model.name``.
        """
        start = time.monotonic()
        if self._closed:
            raise LLMError("connection", "client is closed")
        _check_request(request)
        state = self._state(endpoint)
        metrics = state.metrics
        metrics.calls += 1
        cache = self.cache
        key: str | None = None
        if cache is not None and cache.mode != "off":
            key = cache_key(request, endpoint)
            try:
                hit = await cache.aget(key)
            except sqlite3.Error as exc:
                if cache.mode == "replay-only":
                    metrics.errors["replay_miss"] += 1
                    raise ReplayMissError(
                        f"replay-only cache {str(cache.path)!r} is unreadable: {exc}"
                    ) from exc
                log.warning("llm_cache_error", op="get", path=str(cache.path), error=str(exc))
                hit = None
            if hit is not None:
                metrics.cache_hits += 1
                metrics.successes += 1
                return hit
            if cache.mode == "replay-only":
                metrics.errors["replay_miss"] += 1
                raise ReplayMissError(
                    f"replay-only cache {str(cache.path)!r} has no recording of this request"
                    f" (model {request.model.model_id!r} at {endpoint.name!r}, key {key[:16]})"
                )
        metrics.in_flight += 1
        try:
            result = await self._call(state, request, start, deadline)
        except LLMError as exc:
            metrics.errors[exc.kind] += 1
            log.warning(
                "llm_call_failed",
                endpoint=endpoint.name,
                model=request.model.name,
                kind=exc.kind,
                status=exc.status,
                error=state.redact(str(exc)),
            )
            raise
        finally:
            metrics.in_flight -= 1
        metrics.successes += 1
        metrics.prompt_tokens += result.prompt_tokens
        metrics.completion_tokens += result.completion_tokens
        metrics.cost_usd += result.cost_usd
        if key is not None and cache is not None and cache.mode == "read-write":
            try:
                await cache.aput(key, request, endpoint, result)
            except sqlite3.Error as exc:  # the call succeeded; a failed recording is not fatal
                log.warning("llm_cache_error", op="put", path=str(cache.path), error=str(exc))
        return result

    def metrics(self) -> dict[str, dict[str, object]]:
        """Counters per endpoint name, with the breaker's state, as plain data."""
        out: dict[str, dict[str, object]] = {}
        for name, state in self._states.items():
            snapshot = state.metrics.as_dict()
            snapshot["breaker"] = state.breaker.state
            snapshot["breaker_opened"] = state.breaker.times_opened
            out[name] = snapshot
        return out

    def breaker(self, endpoint: str) -> CircuitBreaker | None:
        """The circuit breaker of an endpoint that has been used, by name."""
        state = self._states.get(endpoint)
        return None if state is None else state.breaker

    async def aclose(self) -> None:
        """Close every endpoint's connection pool."""
        self._closed = True
        states = list(self._by_spec.values())
        self._states, self._by_spec = {}, {}
        for state in states:
            await state.transport.aclose()

    # ------------------------------------------------------------------ internals

    def _state(self, endpoint: EndpointSpec) -> _Endpoint:
        """The pool, limits and breaker for these endpoint settings.

        Queries pinned to different config versions may use one endpoint name with
        different settings at the same time; each distinct setting keeps its own
        state for as long as the client lives, so alternating between versions
        reuses pools rather than building a new one at every switch.
        """
        state = self._states.get(endpoint.name)
        if state is not None and (state.spec is endpoint or state.spec == endpoint):
            return state
        known = self._by_spec.get(endpoint)
        if known is not None:  # another config version's settings, still in use
            self._states[endpoint.name] = known  # by name: the settings used last
            self.endpoints[endpoint.name] = endpoint
            return known
        fresh = self._new_state(endpoint)
        if state is not None:  # reconfigured: calls in flight finish on the old pool
            fresh.metrics = state.metrics
            log.info("llm_endpoint_reconfigured", endpoint=endpoint.name, url=fresh.url)
        self._by_spec[endpoint] = fresh
        self._states[endpoint.name] = fresh
        self.endpoints[endpoint.name] = endpoint
        return fresh

    def _new_state(self, endpoint: EndpointSpec) -> _Endpoint:
        secret: str | None = None
        if endpoint.api_key_env:
            secret = os.environ.get(endpoint.api_key_env) or None
            if secret is None:
                raise LLMError(
                    "http",
                    f"endpoint {endpoint.name!r}: environment variable"
                    f" {endpoint.api_key_env!r} (api_key_env) is not set",
                )
        if endpoint.max_concurrency < 1:
            raise ValueError(f"endpoint {endpoint.name!r}: max_concurrency must be >= 1")
        if endpoint.rate_limit_per_s is not None and endpoint.rate_limit_per_s <= 0:
            raise ValueError(f"endpoint {endpoint.name!r}: rate_limit_per_s must be > 0")
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"hieramas/{__version__}",
        }
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        if "openrouter.ai" in endpoint.base_url:
            headers["X-Title"] = self._app_name
            if self._app_url:
                headers["HTTP-Referer"] = self._app_url
        transport = self._transport or (self._transport_factory or httpx_transport)(endpoint)
        breaker = CircuitBreaker(
            self._breaker_failures,
            self._breaker_reset_s,
            on_change=partial(_log_breaker, endpoint.name),
        )
        return _Endpoint(endpoint, transport, headers, breaker, secret)

    async def _call(
        self, state: _Endpoint, request: ChatRequest, start: float, deadline: float | None
    ) -> ChatResult:
        body = build_payload(request, stream=self.stream)
        payload = msgspec.json.encode(body)
        spec = state.spec
        attempts = 1
        try:  # fast path: the first attempt costs no tenacity machinery
            outcome = await self._attempt(state, payload, deadline)
        except AttemptError as first:
            if not first.retryable or spec.max_retries < 1:
                raise
            outcome, attempts = await self._retry(
                state, request.model.name, payload, deadline, first
            )
        completion, ttft_at = outcome
        end = time.monotonic()
        estimated = False
        prompt_tokens = completion.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = estimate_prompt_tokens(request.messages)
            estimated = True
        completion_tokens = completion.completion_tokens
        if completion_tokens is None:
            completion_tokens = estimate_tokens(completion.text)
            estimated = True
        extra: dict[str, object] = {
            "endpoint": spec.name,
            "attempts": attempts,
        }
        if completion.served_model is not None:
            extra["served_model"] = completion.served_model
        if completion.finish_reason is not None:
            extra["finish_reason"] = completion.finish_reason
        return ChatResult(
            text=completion.text,
            model=request.model.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=request.model.cost(prompt_tokens, completion_tokens),
            latency_s=end - start,
            ttft_s=ttft_at - start,
            usage_estimated=estimated,
            extra=extra,
        )

    async def _retry(
        self,
        state: _Endpoint,
        model: str,
        payload: bytes,
        deadline: float | None,
        first: AttemptError,
    ) -> tuple[tuple[Completion, float], int]:
        """Retries after a retryable first failure, driven by tenacity.

        Tenacity sees the first failure as its attempt 1 (re-raised at once), so
        its stop/wait/before_sleep logic covers every retry.
        """
        spec = state.spec
        pending: list[AttemptError] = [first]
        last_error: list[BaseException] = []
        gave_up_for_deadline = False

        async def attempt() -> tuple[Completion, float]:
            if pending:
                raise pending.pop()
            return await self._attempt(state, payload, deadline)

        def stop(retry_state: RetryCallState) -> bool:
            nonlocal gave_up_for_deadline
            if retry_state.outcome is not None:
                failure = retry_state.outcome.exception()
                if failure is not None:
                    last_error[:] = [failure]
            if retry_state.attempt_number > spec.max_retries:
                return True
            if retry_state.upcoming_sleep > self.retry.max_retry_after_s:
                return True
            if deadline is not None and time.monotonic() + retry_state.upcoming_sleep >= deadline:
                gave_up_for_deadline = True
                return True
            return False

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=partial(_before_sleep, state, model),
            reraise=True,
        )
        try:
            outcome: tuple[Completion, float] = await retrying(attempt)
        except LLMError as exc:
            if exc.kind == "circuit_open" and last_error:
                raise LLMError(
                    "circuit_open", f"{exc.args[0]}; last error: {last_error[-1]}"
                ) from last_error[-1]
            if not isinstance(exc, AttemptError):
                raise
            if gave_up_for_deadline:
                raise LLMError(
                    "deadline",
                    f"endpoint {spec.name!r}: deadline leaves no time to retry; last error: {exc}",
                    status=exc.status,
                ) from exc
            raise
        return outcome, int(retrying.statistics.get("attempt_number", 1))

    async def _attempt(
        self, state: _Endpoint, payload: bytes, deadline: float | None
    ) -> tuple[Completion, float]:
        """One HTTP attempt: the parsed completion and the monotonic time of the first token
        (the first content event when streaming, else the response headers)."""
        breaker = state.breaker
        spec = state.spec
        if not breaker.allow():
            raise LLMError(
                "circuit_open",
                f"endpoint {spec.name!r} is failing; circuit open for another"
                f" {breaker.retry_in():.1f}s",
            )
        state.metrics.attempts += 1
        streamed: Completion | EmbeddedError | None = None
        try:
            await _acquire(state, deadline)
            try:
                budget = spec.timeout_s
                clipped = False
                began = time.monotonic()
                if deadline is not None:
                    remaining = deadline - began
                    if remaining <= 0:
                        raise AttemptError("deadline", f"endpoint {spec.name!r}: deadline passed")
                    if remaining < budget:
                        budget, clipped = remaining, True
                try:
                    async with asyncio.timeout(budget):
                        request = _post(state, payload)
                        response = await state.transport.handle_async_request(request)
                        response.request = request
                        first_token_at = time.monotonic()  # headers: TTFT unless streaming
                        try:
                            if self.stream and _is_event_stream(response):
                                raw = b""
                                streamed, first_token_at = await _read_stream(
                                    response, first_token_at
                                )
                            else:
                                raw = await _read_body(response)
                        finally:
                            await response.aclose()
                except (TimeoutError, httpx.TimeoutException) as exc:
                    if clipped:
                        raise AttemptError(
                            "deadline",
                            f"endpoint {spec.name!r}: deadline reached after {budget:.3g}s"
                            " waiting for the response",
                        ) from exc
                    raise AttemptError(
                        "timeout",
                        f"endpoint {spec.name!r}: no complete response within"
                        f" timeout_s={spec.timeout_s:g}",
                        retryable=True,
                        endpoint_fault=True,
                    ) from exc
                except httpx.HTTPError as exc:
                    raise AttemptError(
                        "connection",
                        f"endpoint {spec.name!r} at {state.url}: {type(exc).__name__}:"
                        f" {state.redact(str(exc)) or 'connection failed'}",
                        retryable=True,
                        endpoint_fault=True,
                    ) from exc
            finally:
                state.semaphore.release()
            if streamed is None:
                completion = _interpret(state, response, raw)
            elif isinstance(streamed, Completion):
                completion = streamed
            else:
                raise _status_error(
                    state, streamed.code, response.headers, state.redact(streamed.message)
                )
        except AttemptError as exc:
            if exc.endpoint_fault:
                breaker.record_failure()
            elif exc.status is not None and exc.status != 429:
                breaker.record_success()  # it answered: the endpoint is up
            else:
                breaker.release()
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.record_success()
        return completion, first_token_at


def _post(state: _Endpoint, payload: bytes) -> httpx.Request:
    """The request, its headers complete.  ``httpx.Request(content=...)`` re-derives Host
    and Content-Length through several passes over the headers, about a fifth of a call's
    CPU; here they come precomputed."""
    headers = state.headers.copy()  # a copy of normalised headers is not normalised again
    headers["Content-Length"] = str(len(payload))
    request = httpx.Request(
        "POST", state.url, headers=headers, stream=httpx.ByteStream(payload),
        extensions=state.extensions,
    )  # fmt: skip
    request.read()  # the body stays available as request.content
    return request


async def _read_body(response: httpx.Response) -> bytes:
    """The whole body.  httpx's decoding pipeline (``aread``) costs tens of microseconds
    per call even for an identity body, so it runs only when the server encoded it."""
    stream = response.stream
    if "content-encoding" in response.headers or not isinstance(stream, httpx.AsyncByteStream):
        return await response.aread()
    return b"".join([chunk async for chunk in stream])


def _is_event_stream(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300 and response.headers.get(
        "content-type", ""
    ).startswith("text/event-stream")


async def _read_stream(
    response: httpx.Response, headers_at: float
) -> tuple[Completion | EmbeddedError, float]:
    """Consume a server-sent event stream; returns the completion and the first-token time."""
    accumulator = StreamAccumulator()
    first_token_at: float | None = None
    async for line in response.aiter_lines():
        if accumulator.feed(line) and first_token_at is None:
            first_token_at = time.monotonic()
        if accumulator.done:
            break
    return accumulator.finish(), first_token_at if first_token_at is not None else headers_at


async def _acquire(state: _Endpoint, deadline: float | None) -> None:
    """Take a concurrency slot (and a rate-limit token), giving up at the deadline."""
    semaphore, limiter = state.semaphore, state.limiter
    if limiter is None and not semaphore.locked():
        await semaphore.acquire()  # immediate
        return
    try:
        if deadline is None:
            await semaphore.acquire()
        else:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await semaphore.acquire()
    except TimeoutError as exc:
        raise AttemptError(
            "deadline", f"endpoint {state.spec.name!r}: deadline passed while queued"
        ) from exc
    if limiter is None:
        return
    try:
        if deadline is None:
            await limiter.acquire()
        else:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await limiter.acquire()
    except BaseException as exc:
        semaphore.release()
        if isinstance(exc, TimeoutError):
            raise AttemptError(
                "deadline", f"endpoint {state.spec.name!r}: deadline passed while rate-limited"
            ) from exc
        raise


def _interpret(state: _Endpoint, response: httpx.Response, raw: bytes) -> Completion:
    status = response.status_code
    if 200 <= status < 300:
        parsed = parse_completion(raw)
        if isinstance(parsed, Completion):
            return parsed
        raise _status_error(state, parsed.code, response.headers, state.redact(parsed.message))
    raise _status_error(state, status, response.headers, state.redact(error_detail(raw)))


def _status_error(
    state: _Endpoint, status: int | None, headers: httpx.Headers, detail: str
) -> AttemptError:
    name = state.spec.name
    retry_after = _retry_after(headers)
    if status == 429:
        return AttemptError(
            "rate_limited",
            f"endpoint {name!r} is rate limiting: {detail}",
            status=429,
            retryable=True,
            retry_after=retry_after,
        )
    if status is None:  # an error object in a 200 body, without a code
        return AttemptError(
            "http", f"endpoint {name!r} returned an error: {detail}", retryable=True
        )
    if status >= 500 or status in _RETRYABLE_4XX:
        return AttemptError(
            "http",
            f"endpoint {name!r} failed: {detail}",
            status=status,
            retryable=True,
            retry_after=retry_after,
            endpoint_fault=status >= 500,
        )
    return AttemptError("http", f"endpoint {name!r} rejected the request: {detail}", status=status)


def _retry_after(headers: httpx.Headers) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"), time.time())


def _check_request(request: ChatRequest) -> None:
    messages = request.messages
    if not isinstance(messages, list) or not messages:
        raise ValueError("ChatRequest.messages must be a non-empty list")
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise ValueError(f"ChatRequest.messages[{i}] must be {{'role': str, 'content': str}}")


def _before_sleep(state: _Endpoint, model: str, retry_state: RetryCallState) -> None:
    state.metrics.retries += 1
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    log.warning(
        "llm_retry",
        endpoint=state.spec.name,
        model=model,
        attempt=retry_state.attempt_number,
        sleep_s=round(retry_state.upcoming_sleep, 3),
        error=state.redact(str(exc)),
    )


def _log_breaker(endpoint: str, old: BreakerState, new: BreakerState) -> None:
    log.warning("llm_breaker", endpoint=endpoint, old=old, new=new)
