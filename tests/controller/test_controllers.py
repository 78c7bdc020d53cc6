"""Several controllers: their gateways share queries (queue group) and survive each other."""

from __future__ import annotations

from typing import Any

from hieramas.bus import Bus
from hieramas.controller.client import HieraClient
from hieramas.controller.service import Controller
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import config_yaml, node


def test_two_controllers_share_queries_and_survive_the_loss_of_one(
    nats_server: NatsServer, llm_url: str
) -> None:
    served: dict[str, int] = {"first": 0, "second": 0}

    def counting(controller: Controller, name: str) -> None:
        handler = controller.gateway._on_query

        def wrapped(*args: Any) -> Any:
            served[name] += 1
            return handler(*args)

        controller.gateway._on_query = wrapped  # type: ignore[method-assign]

    bus = Bus(NatsSettings.from_env(nats_server.url), sender="second-controller").start()
    second = Controller(bus)
    counting(second, "second")
    try:
        with Stack(nats_url=nats_server.url, controller=False) as stack:
            assert stack.bus is not None
            first = Controller(stack.bus)
            counting(first, "first")
            first.start()
            second.start()
            client = HieraClient(stack.bus)
            cfg = config_yaml(
                llm_url, {"expert": node("Critic", ["fixed:B", "fixed:B"], "fixed:B")}
            )
            stack.bus.call(client.apply_config(cfg), 10)

            def ask_many(n: int) -> list[dict[str, Any]]:
                return [stack.bus.call(client.ask(f"question {i}?"), 30) for i in range(n)]

            results = ask_many(20)
            assert [r["status"] for r in results] == ["ok"] * 20
            assert {r["answer"] for r in results} == {"B"}
            assert served["first"] > 0 and served["second"] > 0  # the queue group spreads them
            assert served["first"] + served["second"] == 20

            second.stop()
            before = served["second"]
            results = ask_many(10)
            assert [r["status"] for r in results] == ["ok"] * 10
            assert served["second"] == before  # the stopped gateway gets nothing more
            first.stop()
    finally:
        bus.stop()
