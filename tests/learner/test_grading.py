"""Grading assembled queries with the deterministic graders: node answer keys and final texts
in every domain (HumanEval in the real sandbox), and what is not an episode."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
import yaml

from hieramas.controller.config import HieraConfig, parse_config
from hieramas.learner.assembly import Assembled
from hieramas.learner.grading import ItemIndex, Rejected, grade_episode, with_feedback
from hieramas.learner.querying import ask_graded
from hieramas.learner.rewards import RewardConfig, node_rewards
from hieramas.learner.slots import SlotLayout
from hieramas.tasks.answers import extract_answer
from hieramas.tasks.sandbox import Sandbox
from hieramas.wire.events import AssignmentRecord, NodeModels, QueryDone, SupernodeRun

ROLES = {"mmlu": "Critic", "math": "Math Solver", "gsm8k": "Math Solver", "humaneval": "Bug Fixer"}


def _config(domain: str) -> HieraConfig:
    text = yaml.safe_dump(
        {
            "name": f"{domain}-2",
            "domain": domain,
            "endpoints": {"emu": {"kind": "emulator"}},
            "llms": {"m": {"endpoint": "emu"}},
            "supernodes": {
                n: {"role": ROLES[domain], "proposers": ["m"], "synthesizer": "m"} for n in "xy"
            },
            "decision": "m",
        }
    )
    return parse_config(text)


def _assembled(
    domain: str,
    item_id: str,
    answers: tuple[str | None, str | None],
    text: str | None,
    **kw: object,
) -> Assembled:
    nodes = {
        n: SupernodeRun(
            query_id="q", config_version=1, node=n, role=ROLES[domain], status="ok", answer=a,
            models=NodeModels(proposers=["m"], synthesizer="m"), cost_usd=0.01,
        )
        for n, a in zip("xy", answers, strict=True)
    }  # fmt: skip
    query = QueryDone(
        query_id="q",
        config_version=1,
        status=str(kw.get("status", "ok")),
        text=text,
        domain=domain,
        item_id=item_id,
        cost_usd=0.03,
        sampled=True,
        assignment=AssignmentRecord(
            proposers={"x": ["m"], "y": ["m"]}, synthesizers={"x": "m", "y": "m"}, decision="m"
        ),
        task_text="task",
        temperature=1.0,
        log_probs=[-0.1] * 4,
    )
    if kw.get("no_plan"):
        query = msgspec.structs.replace(query, assignment=None)
    return Assembled(query, nodes)


def _grade(assembled: Assembled, domain: str):  # type: ignore[no-untyped-def]
    config = _config(domain)
    layout = SlotLayout.from_config(config)
    return asyncio.run(grade_episode(assembled, config, layout, ItemIndex(), Sandbox()))


@pytest.mark.parametrize(
    ("domain", "item_id", "right", "wrong", "final"),
    [
        ("mmlu", "abstract_algebra/2", "B", "C", "Therefore the answer is (B)."),
        ("gsm8k", "gsm8k/0", "72.0", "71", "So she sold #### 72"),
        ("math", "math500/0", "(3,\\frac{\\pi}{2})", "(3,\\pi)", "\\boxed{(3, \\frac{\\pi}{2})}"),
    ],
)
def test_node_keys_and_final_texts_are_graded_against_the_gold(
    domain: str, item_id: str, right: str, wrong: str, final: str
) -> None:
    episode, item_error = _grade(_assembled(domain, item_id, (right, wrong), final), domain)
    assert item_error is None
    assert (episode.nodes["x"].correct, episode.nodes["y"].correct) == (True, False)
    assert episode.final_correct is True and episode.total_cost_usd == 0.03
    assert episode.slot_log_probs == (-0.1,) * 4 and episode.temperature == 1.0
    # E_x judges x's own (right) answer, E_y its own (wrong) one; both see the right final
    rewards = node_rewards(episode, RewardConfig(lam=0.0))
    assert rewards["x"] > rewards["y"]


def test_humaneval_node_code_runs_in_the_sandbox() -> None:
    item = ItemIndex().get("humaneval", "HumanEval/0")
    good = extract_answer("humaneval", item.answer)
    bad = extract_answer("humaneval", item.answer.replace("< threshold", "> threshold"))
    assert good and bad and good != bad
    text = f"```python\n{item.answer}\n```"
    episode, _ = _grade(_assembled("humaneval", item.id, (good, bad), text), "humaneval")
    assert (episode.nodes["x"].correct, episode.nodes["y"].correct) == (True, False)
    assert episode.final_correct is True


def test_what_has_no_ground_truth_or_is_no_episode() -> None:
    episode, error = _grade(_assembled("mmlu", "no_subject/0", ("B", "B"), "(B)"), "mmlu")
    assert isinstance(error, Rejected) and error.code == "unknown_item"
    assert episode.final_correct is None and episode.nodes["x"].correct is None
    fed = with_feedback(episode, 0.9)
    assert fed.final_correct is True and all(n.answerless for n in fed.nodes.values())

    timed_out = _assembled("mmlu", "abstract_algebra/2", ("B", None), None, status="timeout")
    episode, _ = _grade(timed_out, "mmlu")
    assert episode.final_correct is False and episode.nodes["y"].correct is False
    for kw, code in (({"status": "no_worker"}, "runtime_failure"), ({"no_plan": True}, "no_plan")):
        with pytest.raises(Rejected) as rejected:
            _grade(_assembled("mmlu", "abstract_algebra/2", ("B", "B"), "(B)", **kw), "mmlu")
        assert rejected.value.code == code


@pytest.mark.parametrize(
    "line",
    [
        "x: synth: m: connection: endpoint 'emu' at http://127.0.0.1:9/v1: Connection refused",
        "decision: alone_all_failed: m: circuit_open: endpoint 'emu' is failing",
    ],
)
def test_a_query_failed_by_an_unreachable_endpoint_is_no_wrong_answer(line: str) -> None:
    """A policy failure graded as a wrong answer, unless a call found its endpoint gone (a
    resumed run's query still naming the stopped server): then it is no episode."""
    failed = _assembled("mmlu", "abstract_algebra/2", ("B", None), None, status="error")
    episode, _ = _grade(failed, "mmlu")  # the plan's LLM failed: a wrong answer
    assert episode.final_correct is False
    slow = msgspec.structs.replace(failed.query, failures=["x: synth: m: timeout: 30 s"])
    assert _grade(Assembled(slow, failed.nodes), "mmlu")[0].final_correct is False
    gone = msgspec.structs.replace(failed.query, failures=["x: p0: m: timeout: 30 s", line])
    with pytest.raises(Rejected) as rejected:
        _grade(Assembled(gone, failed.nodes), "mmlu")
    assert rejected.value.code == "infrastructure_failure"
    assert "unreachable" in str(rejected.value)


class _Answers:
    """A client stub that answers every query with ``result``."""

    def __init__(self, result: dict[str, object]) -> None:
        self.result = result

    async def ask(self, *args: object, **kw: object) -> dict[str, object]:
        return self.result


def test_the_driver_sees_which_failed_queries_the_learner_will_not_train_on() -> None:
    """The training driver asks them again rather than count them (the learner skips them)."""
    item = ItemIndex().get("mmlu", "abstract_algebra/2")
    gone = "expert: synth: m: connection: endpoint 'emu' at http://127.0.0.1:9/v1: refused"
    cases = [
        ({"status": "error", "sampled": True, "failures": [gone]}, True),
        ({"status": "error", "sampled": True, "failures": ["expert: synth: m: timeout: 30 s"]},
         False),
        ({"status": "ok", "sampled": True, "text": "(B)", "failures": [gone]}, False),
    ]  # fmt: skip
    for result, unreachable in cases:
        client: Any = _Answers(result)
        asked = asyncio.run(ask_graded(client, item, config_version=1, explore=True, proposers={}))
        assert asked.unreachable is unreachable, result
