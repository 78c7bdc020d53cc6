"""What the per-component NATS logins cost and how fast a refusal is seen.

Runs a real nats-server with the shipped ``deploy/nats/users.conf`` (random passwords) and
prints:

* how long a refused request takes to fail: a client's config request (a HieraMAS request,
  whose caller would otherwise wait its 15 s timeout) and a worker's write into the config
  bucket (a JetStream request, otherwise nats-py's 5 s timeout), median and max of N;
* the cost of the refusal guard on nats-py's own requests: a KV put by the controller with
  the guard and without it (nats-py's bare method), interleaved rounds, min and median
  microseconds per put, measured in the same run; and, without the network (whose noise
  on a loaded machine swamps it), the guard around a request that returns at once, against
  that request alone.

    python bench/permissions.py [--refusals 50] [--puts 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hieramas.bus import Bus, BusError
from hieramas.controller.store import CONFIG_BUCKET
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.wire import Envelope, Kind, Subjects

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("controller", "worker", "learner", "exporter", "client")


def start_server(directory: Path) -> tuple[NatsServer, dict[str, str]]:
    passwords = {role: secrets.token_hex(12) for role in ROLES}
    for role, password in passwords.items():
        os.environ[f"HIERAMAS_NATS_PASSWORD_{role.upper()}"] = password
    (directory / "users.conf").write_text((ROOT / "deploy/nats/users.conf").read_text())
    conf = directory / "nats.conf"
    conf.write_text("include users.conf\n")
    server = NatsServer(store_dir=directory / "js", extra_args=["-c", str(conf)]).start()
    for role in ROLES:  # read once by the server
        del os.environ[f"HIERAMAS_NATS_PASSWORD_{role.upper()}"]
    return server, passwords


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1e3:.2f} ms, max {max(values) * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refusals", type=int, default=50)
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hm-perm-") as tmp:
        server, passwords = start_server(Path(tmp))
        try:
            run(server.url, passwords, args)
        finally:
            server.stop()


def run(url: str, passwords: dict[str, str], args: argparse.Namespace) -> None:
    def connect(role: str) -> Bus:
        return Bus(NatsSettings(url=url, user=role, password=passwords[role]), sender=role).start()

    controller, worker, client = connect("controller"), connect("worker"), connect("client")
    try:
        bucket_js = controller.nc.jetstream()
        controller.call(bucket_js.create_key_value(bucket=CONFIG_BUCKET), 30)
        envelope = Envelope(kind=Kind.CONFIG_GET, payload={}, sender="bench")
        subject = Subjects().config("get")

        async def refused_request() -> float:
            start = time.perf_counter()
            try:
                await client.arequest(subject, envelope, timeout=15)
            except BusError as exc:
                assert exc.code == "permission_denied", exc
            return time.perf_counter() - start

        js = worker.nc.jetstream(timeout=5)

        async def refused_put() -> float:
            kv = await js.key_value(CONFIG_BUCKET)
            start = time.perf_counter()
            try:
                await kv.put("current", b"9")
            except BusError as exc:
                assert exc.code == "permission_denied", exc
            return time.perf_counter() - start

        requests = [client.call(refused_request(), 20) for _ in range(args.refusals)]
        puts = [worker.call(refused_put(), 20) for _ in range(args.refusals)]
        print(f"refused config request (client, caller timeout 15 s): {ms(requests)}")
        print(f"refused KV write (worker, nats-py timeout 5 s):      {ms(puts)}")

        guarded = controller.nc.request
        timings: dict[str, list[float]] = {"guarded": [], "bare": []}

        async def put_many() -> float:
            kv = await controller.nc.jetstream().key_value(CONFIG_BUCKET)
            for _ in range(200):  # warm up
                await kv.put("bench", b"x")
            start = time.perf_counter()
            for _ in range(args.puts):
                await kv.put("bench", b"x")
            return (time.perf_counter() - start) / args.puts * 1e6

        nc: Any = controller.nc
        for _ in range(args.rounds):
            nc.request = guarded
            timings["guarded"].append(controller.call(put_many(), 300))
            del nc.request  # nats-py's own method again
            timings["bare"].append(controller.call(put_many(), 300))
        nc.request = guarded

        async def instant(subject: str, *args: Any, **kwargs: Any) -> Any:
            return None

        wrapped_instant = controller._refusable_request(instant)

        async def loop_over(call: Any, n: int = 100_000) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await call("$KV.x.y", b"")
            return (time.perf_counter() - start) / n * 1e6

        for _ in range(args.rounds):
            timings.setdefault("instant, guarded", []).append(
                controller.call(loop_over(wrapped_instant), 300)
            )
            timings.setdefault("instant, bare", []).append(controller.call(loop_over(instant), 300))
        for name, values in timings.items():
            what = "request returning at once" if name.startswith("instant") else "KV put"
            count = "100000" if name.startswith("instant") else str(args.puts)
            print(
                f"{what}, {name.removeprefix('instant, '):7s}: min {min(values):.2f} us, "
                f"median {statistics.median(values):.2f} us ({args.rounds} rounds of {count})"
            )
    finally:
        for bus in (client, worker, controller):
            bus.stop()


if __name__ == "__main__":
    main()
