"""``hieramas policy list|show|rollback`` and ``hieramas feedback`` on a real nats-server."""

from __future__ import annotations

import json
import subprocess
import sys

from learner_support import toy_config
from typer.testing import CliRunner

from hieramas.bus import Bus
from hieramas.cli import app
from hieramas.learner.checkpoint import CheckpointMeta, encode_checkpoint
from hieramas.learner.embeddings import HashEmbedder
from hieramas.learner.policy import Policy
from hieramas.learner.store import PolicyStore
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.traces import replay
from hieramas.wire import Subjects
from hieramas.wire.events import Feedback


def _publish_two(url: str) -> None:
    config = toy_config({"a": ("Critic", 1)}, {"cheap": 0.1})
    policy = Policy.create(config, HashEmbedder(32), hidden=8)

    def encode(version: int) -> tuple[bytes, dict[str, object]]:
        meta = CheckpointMeta(
            version=version, parent=version - 1 or None, config_name="toy", config_version=3,
            layout=policy.layout.to_json(), embedder="hash-32", dim=32, hidden=8, seed=11,
            metrics={"accuracy": 0.25 * version, "mean_reward": 0.5},
        )  # fmt: skip
        blob = encode_checkpoint(policy, meta)
        return blob, {"lineage": "abc", "step": version - 1, "config_name": "toy", "seed": 11,
                      "config_version": 3, "parent": meta.parent, "metrics": meta.metrics}  # fmt: skip

    bus = Bus(NatsSettings(url=url)).start()
    try:

        async def both() -> None:
            store = await PolicyStore(bus).open()
            await store.publish(encode)
            await store.publish(encode)

        bus.call(both(), 30)
    finally:
        bus.stop()


def test_policy_list_show_and_rollback(nats_server: NatsServer) -> None:
    url = nats_server.url
    runner = CliRunner()
    empty = runner.invoke(app, ["policy", "list", "--nats", url, "--json"])
    assert empty.exit_code == 0 and json.loads(empty.output) == []
    _publish_two(url)

    listed = json.loads(runner.invoke(app, ["policy", "list", "--nats", url, "--json"]).output)
    assert [(r["version"], r["current"]) for r in listed] == [(1, False), (2, True)]
    assert listed[1]["meta"]["parent"] == 1 and listed[1]["meta"]["lineage"] == "abc"
    table = runner.invoke(app, ["policy", "list", "--nats", url])
    assert table.exit_code == 0 and "abc" in table.output and "0.500" in table.output

    shown = json.loads(runner.invoke(app, ["policy", "show", "1", "--nats", url, "--json"]).output)
    assert (shown["version"], shown["current"], shown["meta"]["seed"]) == (1, False, 11)
    assert shown["meta"]["metrics"]["accuracy"] == 0.25
    current = runner.invoke(app, ["policy", "show", "--nats", url])
    assert current.exit_code == 0 and "2 (current)" in current.output

    rolled = runner.invoke(app, ["policy", "rollback", "1", "--nats", url])
    assert rolled.exit_code == 0 and "policy version 1 is current" in rolled.output
    listed = json.loads(runner.invoke(app, ["policy", "list", "--nats", url, "--json"]).output)
    assert [r["current"] for r in listed] == [True, False]
    missing = runner.invoke(app, ["policy", "rollback", "9", "--nats", url])
    assert missing.exit_code == 1 and "not_found" in missing.output


def test_feedback_puts_a_score_into_the_trace_stream(nats_server: NatsServer) -> None:
    run = CliRunner().invoke(
        app,
        [
            "feedback",
            "q-42",
            "--score",
            "0.0",
            "--comment",
            "wrong year",
            "--nats",
            nats_server.url,
        ],
    )
    assert run.exit_code == 0, run.output
    assert "feedback 0 for query q-42 (user)" in run.output
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        events = bus.call(replay(bus, Subjects()), 30)
    finally:
        bus.stop()
    [event] = events
    assert isinstance(event, Feedback)
    assert (event.query_id, event.score, event.source, event.comment) == (
        "q-42", 0.0, "user", "wrong year",
    )  # fmt: skip
    assert event.ts > 0


def test_the_policy_commands_load_no_torch() -> None:
    code = "import sys, hieramas.cli, hieramas.learner.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
