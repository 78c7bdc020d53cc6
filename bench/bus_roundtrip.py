"""The cost of one NATS hop: request/reply round trips through :class:`hieramas.bus.Bus`.

A query of ``bench/overhead.py`` is a chain of such hops (about 20 on its
critical path, ~90 messages in all), so this is the floor under its overhead.
One process, one real nats-server on loopback, a responder on the same
connection (as the embedded stack has it), small envelopes.  Each round is
measured three ways in the same run:

* ``raw nats-py``: ``nc.request`` with a fixed byte payload and a bare echo
  callback (the library's own floor);
* ``Bus.arequest``: our envelope encode/decode, reply mux and typed errors;
* ``Bus.request``: the callback form the supernodes use (no future per call).

    python bench/bus_roundtrip.py [--requests 5000]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from hieramas.bus import Bus
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.wire import Envelope, Kind

PAYLOAD = {"text": "x" * 500}


def _serve(bus: Bus) -> None:
    def echo(envelope: Envelope, reply: str | None) -> None:
        if reply:
            bus.publish(reply, envelope.reply(Kind.CONFIG_REPLY, {"status": "ok"}, sender="echo"))

    bus.subscribe("bench.echo", echo)

    async def raw() -> None:
        async def cb(msg: Any) -> None:
            await bus.nc.publish(msg.reply, b"ok")

        await bus.nc.subscribe("bench.raw", cb=cb)
        await bus.nc.flush()

    bus.call(raw(), 5)


async def _rounds(
    one: Callable[[], Awaitable[None]], n: int, concurrency: int
) -> tuple[float, float]:
    """(wall µs, CPU µs) per round trip for ``n`` round trips, ``concurrency`` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def limited() -> None:
        async with sem:
            await one()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(limited() for _ in range(n)))
    return (
        1e6 * (time.perf_counter() - wall0) / n,
        1e6 * (time.process_time() - cpu0) / n,
    )


def main(
    requests: Annotated[int, typer.Option(help="Round trips per measurement.")] = 5000,
    repeats: Annotated[int, typer.Option(help="Interleaved repeats (median reported).")] = 3,
) -> None:
    """Print wall and CPU time per round trip (2 messages) at several concurrencies."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cpus, load average {load}; {requests} round trips per figure")
    with NatsServer() as server:
        bus = Bus(NatsSettings(url=server.url), sender="bench").start()
        try:
            _serve(bus)
            envelope = Envelope(kind=Kind.CONFIG_GET, payload=PAYLOAD)

            async def raw() -> None:
                await bus.nc.request("bench.raw", b"x" * 500, timeout=5)

            async def arequest() -> None:
                await bus.arequest("bench.echo", envelope, 5)

            async def callback() -> None:
                future: asyncio.Future[Any] = bus.loop.create_future()
                bus.request("bench.echo", envelope, 5, future.set_result)
                await future

            ways = {"raw nats-py": raw, "Bus.arequest": arequest, "Bus.request": callback}
            for concurrency in (1, 8, 64):
                figures: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
                for one in ways.values():  # warm-up
                    bus.call(_rounds(one, 200, concurrency), 60)
                for _ in range(repeats):
                    for name, one in ways.items():
                        figures[name].append(bus.call(_rounds(one, requests, concurrency), 300))
                print(
                    f"\nconcurrency {concurrency}: per round trip (2 messages), median of {repeats}"
                )
                base = statistics.median(c for _, c in figures["raw nats-py"])
                for name, samples in figures.items():
                    wall = statistics.median(w for w, _ in samples)
                    cpu = statistics.median(c for _, c in samples)
                    print(
                        f"  {name:14s} wall {wall:7.1f} µs   CPU {cpu:7.1f} µs   ({cpu / base:.2f}x raw CPU)"
                    )
        finally:
            bus.stop()


if __name__ == "__main__":
    typer.run(main)
