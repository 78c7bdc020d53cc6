"""Every training query is planned by a policy version: the controller builds a config's
learned planner when the config becomes current (loading the current version), and a
training query that comes before the first version waits for it (real nats-server,
controller, policy store and provider)."""

from __future__ import annotations

import time

import numpy as np

from hieramas.controller.config import parse_config
from hieramas.controller.learned import LearnedPlanner
from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.planning import unpack_embedding
from hieramas.learner.policy import Policy
from hieramas.learner.store import PolicyStore
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import QueryDone
from support import apply_config, ask, client_of, config_yaml, node


def _config(llm_url: str, name: str) -> str:
    return config_yaml(
        llm_url, {"a": node("Critic", ["fixed:A", "fixed:B"], "fixed:A")}, name=name
    ) + "planner: {kind: learned}\n"  # fmt: skip


def _publish(stack: Stack, config_text: str) -> int:
    config = parse_config(config_text)
    policy = Policy.create(config, HashEmbedder(16), hidden=8, seed=0)

    def encode(version: int) -> tuple[bytes, dict[str, object]]:
        meta = CheckpointMeta(
            version=version, parent=None, config_name=config.name, config_version=1,
            layout=policy.layout.to_json(), embedder="hash-16", dim=16,
            hidden=policy.net.hidden, seed=0, temperature=2.0,
        )  # fmt: skip
        return encode_checkpoint(policy, meta), {"lineage": "L"}

    assert stack.bus is not None
    store = stack.bus.call(PolicyStore(stack.bus).open(), 10)
    record = stack.bus.call(store.publish(encode), 30)
    return int(record.version)


def _learned(stack: Stack) -> LearnedPlanner | None:
    assert stack.controller is not None
    for pending in list(stack.controller.gateway._planners.values()):
        if pending.done() and isinstance(pending.result(), LearnedPlanner):
            return pending.result()  # type: ignore[no-any-return]
    return None


def _wait_built(stack: Stack, timeout: float = 20.0) -> LearnedPlanner:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        planner = _learned(stack)
        if planner is not None:
            return planner
        time.sleep(0.02)
    raise AssertionError("the config's learned planner was not built")


def test_the_planner_is_built_with_the_current_version_before_the_first_query(
    nats_server: NatsServer, llm_url: str
) -> None:
    text = _config(llm_url, "first")
    with Stack(nats_url=nats_server.url) as stack:
        version = _publish(stack, text)
        apply_config(stack, text)
        planner = _wait_built(stack)  # built on the config change, before any query
        assert planner.provider.current() is not None  # ... with the version loaded
        first = ask(stack, explore=True)
        assert (first["policy_version"], first["sampled"]) == (version, True)
        assert planner.counters == {"sampled": 1}
        assert stack.bus is not None and stack.controller is not None
        stack.bus.call(stack.controller.traces.flush(), 10)
        events = stack.bus.call(replay(stack.bus, Subjects()), 10)
    [traced] = [e for e in events if isinstance(e, QueryDone)]
    # the training query's trace carries the embedding the policy read, for the learner
    assert traced.embedder == "hash-16"
    vector = unpack_embedding(traced.query_embedding, 16)
    assert vector is not None
    assert np.allclose(vector, HashEmbedder(16).embed([traced.task_text or ""])[0], atol=1e-3)


def test_a_training_query_before_the_first_version_waits_for_it(
    nats_server: NatsServer, llm_url: str
) -> None:
    text = _config(llm_url, "waits")
    with Stack(nats_url=nats_server.url) as stack:
        apply_config(stack, text)
        planner = _wait_built(stack)
        assert planner.provider.current() is None  # nothing published yet
        assert stack.bus is not None
        asked = stack.bus.run(client_of(stack).ask("Which option?", explore=True))
        time.sleep(0.3)  # the query is waiting in a planning thread
        version = _publish(stack, text)
        first = asked.result(30)
        assert (first["policy_version"], first["sampled"]) == (version, True)
        assert planner.counters == {"waited_first": 1, "sampled": 1}
        greedy = ask(stack)
        assert greedy["policy_version"] == version
