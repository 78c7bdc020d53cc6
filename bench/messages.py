"""NATS messages per lone query, and the messages handed over in process instead.

Runs ``bench/overhead.py``'s stack (8 supernodes x 3 proposers, one in-process worker, an
instant in-process LLM) and reads, over ``--queries`` lone queries, the runtime process's
NATS client statistics (messages sent and received, trace publishes and their
acknowledgements included) and the bus counters of locality-aware delivery
(``local.delivered``: messages to a subject this process serves; ``local.replies``: replies
to its own requests).  Counts do not depend on the machine's load.

    python bench/messages.py [--queries 100]
"""

from __future__ import annotations

import argparse

from overhead import InstantClient, config_text, run_queries

import hieramas.stack
from hieramas.controller.client import HieraClient


def main() -> None:
    parser = argparse.ArgumentParser(description="NATS messages per lone query")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    hieramas.stack.OpenAIChatClient = lambda **_: InstantClient()  # type: ignore[assignment,misc]
    with hieramas.stack.Stack(workers=1) as stack:
        assert stack.bus is not None
        bus = stack.bus
        client = HieraClient(bus)
        bus.call(client.apply_config(config_text("http://127.0.0.1:9/v1")), 30)
        bus.call(run_queries(client, 20, 1), 120)  # warm-up
        stats0, counters0 = dict(bus.nc.stats), dict(bus.counters)
        bus.call(run_queries(client, args.queries, 1), 600)
        stats, counters = dict(bus.nc.stats), dict(bus.counters)
    n = args.queries
    print(f"8 supernodes x 3 proposers, {n} lone queries, per query:")
    print(f"  NATS messages sent     {(stats['out_msgs'] - stats0['out_msgs']) / n:6.1f}")
    print(f"  NATS messages received {(stats['in_msgs'] - stats0['in_msgs']) / n:6.1f}")
    for key in ("local.delivered", "local.replies"):
        print(f"  {key:<22} {(counters.get(key, 0) - counters0.get(key, 0)) / n:6.1f}")


if __name__ == "__main__":
    main()
