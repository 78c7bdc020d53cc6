"""Toy configs and simulated episodes for the learner-core tests (no runtime, no emulator)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import yaml

from hieramas.controller.config import HieraConfig, parse_config
from hieramas.learner.episode import Episode, NodeOutcome
from hieramas.learner.planning import PlannedQuery
from hieramas.learner.slots import SlotAssignment


def toy_config(
    nodes: Mapping[str, tuple[str, int]],
    llms: Mapping[str, float],
    *,
    decision: str | None = None,
    domain: str = "toy",
) -> HieraConfig:
    """A config: ``nodes`` maps id -> (role, proposer count); ``llms`` name -> $/M (in and out)."""
    first = next(iter(llms))
    data = {
        "name": "toy",
        "domain": domain,
        "endpoints": {"emu": {"kind": "emulator"}},
        "llms": {n: {"endpoint": "emu", "price_in": p, "price_out": p} for n, p in llms.items()},
        "supernodes": {
            n: {"role": role, "proposers": [first] * k, "synthesizer": first}
            for n, (role, k) in nodes.items()
        },
        "decision": decision or first,
    }
    roles = [role for role, _ in nodes.values()]
    return parse_config(yaml.safe_dump(data, sort_keys=False), roles=lambda _d: roles)


NodeSim = Callable[[str, SlotAssignment, np.random.Generator], tuple[bool, float]]


def simulate(
    plan: PlannedQuery,
    *,
    text: str,
    roles: Mapping[str, str],
    node_sim: NodeSim,
    final_rule: Callable[[Mapping[str, NodeOutcome]], bool],
    rng: np.random.Generator,
    temperature: float,
    answerless: Sequence[str] = (),
) -> Episode:
    """Turn a planned query into a graded episode with ``node_sim`` deciding each supernode."""
    a = plan.assignment
    nodes = {}
    for node, role in roles.items():
        ran = a.synthesizers[node] != "skip"
        correct, cost = node_sim(node, a, rng) if ran else (False, 0.0)
        nodes[node] = NodeOutcome(
            node=node,
            role=role,
            ran=ran,
            answer=("A" if correct else "B") if ran else None,
            correct=correct if ran else None,
            cost_usd=cost,
            answerless=role in answerless,
        )
    return Episode(
        query_id=f"q{rng.integers(1 << 30)}",
        item_id="toy/1",
        domain="toy",
        config_name="toy",
        config_version=1,
        policy_version=plan.policy_version,
        query_text=text,
        assignment=a,
        nodes=nodes,
        final_correct=final_rule(nodes),
        total_cost_usd=sum(n.cost_usd for n in nodes.values()),
        explore=plan.explore,
        temperature=temperature,
        slot_log_probs=plan.decision.slot_log_probs,
    )
