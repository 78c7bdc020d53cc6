"""Soak: N concurrent clients for a fixed time against the 3-host cluster with the emulator.

Builds the chaos suite's cluster (three network namespaces on a bridge, each with a
nats-server of an R3 JetStream cluster and a worker; controllers on two hosts; the
emulator on the bridge; ``hieramas/cluster.py``), applies a config, and asks queries from
``--clients`` clients in the root namespace for ``--duration`` seconds.  Prints
throughput and p50/p99 latency per ``--interval``, the RSS of every process at the start
and the end, and the errors by type.  Needs root (``ip netns``).  Figures are EMULATED.

    sudo python bench/soak.py                 # 2 minutes, 8 clients
    sudo python bench/soak.py --quick         # 20 s (CI)
    sudo python bench/soak.py --baseline      # the same load on one host first, and the ratios
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hieramas.bus import Bus
from hieramas.cluster import Cluster
from hieramas.controller.client import HieraClient
from hieramas.loadgen import Outcome, QueryLoad
from hieramas.logs import configure_logging
from hieramas.netlab import NetLab, unavailable

DEMO = Path(__file__).resolve().parent.parent / "hieramas" / "configs" / "default.yaml"


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _windows(outcomes: list[Outcome], t0: float, interval: float) -> list[dict[str, float]]:
    """Per interval (by end time): queries ended, answers/s, p50/p99 latency of answers."""
    if not outcomes:
        return []
    rows = []
    end = max(o.ended for o in outcomes)
    start = t0
    while start < end:
        inside = [o for o in outcomes if start <= o.ended < start + interval]
        answers = [o.latency_s for o in inside if o.kind == "answer"]
        rows.append(
            {
                "t_s": round(start - t0, 1),
                "ended": len(inside),
                "answers_per_s": len(answers) / interval,
                "p50_s": _quantile(answers, 0.5),
                "p99_s": _quantile(answers, 0.99),
                "errors": len(inside) - len(answers),
            }
        )
        start += interval
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="soak the 3-host cluster (EMULATED LLMs)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--quick", action="store_true", help="20 s of load (for CI)")
    parser.add_argument("--interval", type=float, default=None, help="report window (s)")
    parser.add_argument("--latency-scale", type=float, default=0.05, help="emulated latency")
    parser.add_argument("--config", type=Path, default=DEMO, help="config YAML to apply")
    parser.add_argument("--timeout", type=float, default=30.0, help="each query's deadline")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="first the same load on one host (one server, R1, one worker, one controller)",
    )
    args = parser.parse_args()
    duration = 20.0 if args.quick else args.duration
    interval = args.interval or (5.0 if args.quick else 10.0)
    why = unavailable()
    if why is not None:
        sys.exit(f"soak needs network namespaces: {why}")
    configure_logging("error")
    base = None
    if args.baseline:
        print("baseline: one host", flush=True)
        base = soak(1, args, duration, interval)
        print(flush=True)
    print("three hosts", flush=True)
    load, wall = soak(3, args, duration, interval)
    if base is not None:
        rate, base_rate = _rate(load, wall), _rate(*base)
        p99, base_p99 = _p99(load), _p99(base[0])
        print(
            f"three hosts vs one: answers/s {rate:.2f} vs {base_rate:.2f} "
            f"(x{rate / base_rate:.2f}), p99 {p99:.2f} s vs {base_p99:.2f} s (x{p99 / base_p99:.2f})"
        )


def _rate(load: QueryLoad, wall: float) -> float:
    return sum(o.kind == "answer" for o in load.outcomes) / wall


def _p99(load: QueryLoad) -> float:
    return _quantile([o.latency_s for o in load.outcomes if o.kind == "answer"], 0.99)


def soak(
    hosts: int, args: argparse.Namespace, duration: float, interval: float
) -> tuple[QueryLoad, float]:
    """One soak on ``hosts`` hosts (controllers on the first two); reported as it ends."""
    workdir = Path(tempfile.mkdtemp(prefix="hm-soak-"))
    controllers = (0, 1) if hosts > 1 else (0,)
    with (
        NetLab(hosts) as lab,
        Cluster(
            lab, workdir, controllers=controllers, emulator_latency=args.latency_scale
        ) as cluster,
    ):
        control = Bus(cluster.settings("controller", "soak-apply"), sender="soak").start()
        try:  # the controller's login applies the config; the clients' may only ask
            controller = HieraClient(control, sender="soak")
            control.call(controller.apply_config(args.config.read_text(), source="soak"), 30)
        finally:
            control.stop()
        bus = Bus(cluster.settings("client", "soak"), sender="soak").start()
        try:
            warm = QueryLoad(bus, clients=args.clients, timeout_s=args.timeout)
            bus.call(warm.run(queries=2 * args.clients), 120)  # plans, connections, caches
            rss_start = cluster.rss()
            load = QueryLoad(bus, clients=args.clients, timeout_s=args.timeout)
            t0 = time.monotonic()
            bus.call(load.run(duration_s=duration), duration + args.timeout + 30)
            wall = time.monotonic() - t0
            time.sleep(1.0)
            rss_end = cluster.rss()
            counters = dict(bus.counters)
        finally:
            bus.stop()
    report(load, t0, wall, interval, rss_start, rss_end, args, duration, counters, hosts)
    return load, wall


def report(
    load: QueryLoad,
    t0: float,
    wall: float,
    interval: float,
    rss_start: dict[str, float],
    rss_end: dict[str, float],
    args: argparse.Namespace,
    duration: float,
    counters: dict[str, int],
    hosts: int,
) -> None:
    outcomes = load.outcomes
    answers = [o.latency_s for o in outcomes if o.kind == "answer"]
    print(
        f"soak (EMULATED LLMs, latency scale {args.latency_scale}): {args.clients} clients, "
        f"{duration:.0f} s, config {args.config.name}, deadline {args.timeout:.0f} s"
    )
    print(f"{'t (s)':>6} {'ended':>6} {'answers/s':>9} {'p50 (s)':>8} {'p99 (s)':>8} {'errors':>6}")
    windows = _windows(outcomes, t0, interval)
    for row in windows:
        print(
            f"{row['t_s']:>6.0f} {row['ended']:>6.0f} {row['answers_per_s']:>9.2f} "
            f"{row['p50_s']:>8.2f} {row['p99_s']:>8.2f} {row['errors']:>6.0f}"
        )
    print(
        f"total: {len(outcomes)} queries in {wall:.1f} s, {len(answers) / wall:.2f} answers/s, "
        f"p50 {_quantile(answers, 0.5):.2f} s, p99 {_quantile(answers, 0.99):.2f} s, "
        f"mean {statistics.fmean(answers) if answers else float('nan'):.2f} s"
    )
    print(f"outcomes by kind: {dict(load.kinds())}; errors by type: ", end="")
    print({code: n for code, n in load.codes().items() if code != "ok"} or "none")
    print(f"{'process':<14} {'RSS start (MB)':>14} {'RSS end (MB)':>12} {'change':>8}")
    for name in sorted(rss_start):
        end = rss_end.get(name, 0.0)
        print(f"{name:<14} {rss_start[name]:>14.1f} {end:>12.1f} {end - rss_start[name]:>+8.1f}")
    if args.json is not None:
        path = args.json.with_suffix(f".{hosts}hosts.json")
        path.write_text(
            json.dumps(
                {
                    "hosts": hosts,
                    "clients": args.clients,
                    "duration_s": duration,
                    "windows": windows,
                    "kinds": dict(load.kinds()),
                    "codes": dict(load.codes()),
                    "rss_start": rss_start,
                    "rss_end": rss_end,
                    "client_bus_counters": counters,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
