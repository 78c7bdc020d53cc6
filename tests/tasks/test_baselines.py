"""Baseline config builders: every config validates and has the method's shape."""

from __future__ import annotations

import pytest

from hieramas.controller.config import HieraConfig, parse_config, topological_order
from hieramas.tasks import baselines as b
from hieramas.tasks.prompts import roles

POOL = b.emulated_pool()
DOMAINS = ["mmlu", "math", "gsm8k", "humaneval"]


def built(method: str, domain: str = "mmlu", **opts: object) -> HieraConfig:
    return parse_config(b.to_yaml(b.build(method, POOL, domain, b.Options(**opts))))


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("method", list(b.METHODS))
def test_every_method_validates_in_every_domain(method: str, domain: str) -> None:
    config = built(method, domain)
    assert config.domain == domain
    assert config.uses_emulator()
    used = {config.decision} | {
        llm for s in config.supernodes.values() for llm in (*s.proposers, s.synthesizer)
    }
    assert set(config.llms) == used - {"skip", "vote", "pass"}


def test_single_is_one_proposer_passed_through() -> None:
    config = built("single", model="gpt-5-nano")
    (node,) = config.supernodes.values()
    assert node.proposers == ["gpt-5-nano"] and node.synthesizer == "pass"
    assert config.decision == "vote" and config.edges == []
    assert config.limits.temperature == 0


def test_cot_skips_every_supernode_so_the_decision_answers_alone() -> None:
    config = built("cot", model="llama-8b")
    assert all(
        s.proposers == ["skip"] and s.synthesizer == "skip" for s in config.supernodes.values()
    )
    assert config.decision == "llama-8b"
    assert list(config.llms) == ["llama-8b"]


def test_direct_is_cot_with_the_direct_answer_prompt() -> None:
    config = built("direct", model="llama-8b")
    assert config.alone_prompt == "direct" and built("cot").alone_prompt == "cot"
    assert config.decision == "llama-8b" and config.name == "direct-llama-8b"
    assert all(s.synthesizer == "skip" for s in config.supernodes.values())


def test_self_consistency_k_samples_at_temperature_and_votes() -> None:
    config = built("self-consistency", model="qwen3-8b", k=7, temperature=0.9)
    (node,) = config.supernodes.values()
    assert node.proposers == ["qwen3-8b"] * 7 and node.synthesizer == "vote"
    assert config.decision == "vote" and config.limits.temperature == 0.9
    with pytest.raises(b.BaselineError):
        b.build("self-consistency", POOL, "mmlu", b.Options(temperature=0.0))


def test_debate_rounds_are_fully_connected() -> None:
    config = built("debate", agents=3, rounds=2)
    assert sorted(config.supernodes) == ["r1a", "r1b", "r1c", "r2a", "r2b", "r2c"]
    assert sorted(config.edges) == sorted((f"r1{x}", f"r2{y}") for x in "abc" for y in "abc")
    assert all(
        s.synthesizer == "pass" and len(s.proposers) == 1 for s in config.supernodes.values()
    )
    assert config.decision == "vote"
    three = built("debate", agents=2, rounds=3)
    assert len(three.supernodes) == 6 and len(three.edges) == 8


def test_moa_chains_layers_of_proposers_and_an_aggregator() -> None:
    config = built("moa", layers=3, proposers=("llama-8b", "qwen3-8b"), aggregator="gpt-5-mini")
    assert list(config.supernodes) == ["layer1", "layer2", "layer3"]
    assert config.edges == [("layer1", "layer2"), ("layer2", "layer3")]
    for node in config.supernodes.values():
        assert node.proposers == ["llama-8b", "qwen3-8b"] and node.synthesizer == "gpt-5-mini"


@pytest.mark.parametrize("domain", DOMAINS)
def test_full_dag_has_every_role_and_every_forward_edge(domain: str) -> None:
    config = built("hieramas-full", domain, seed=3, proposers_per_node=3, decision="gpt-5-mini")
    n = len(roles(domain))
    assert sorted(s.role for s in config.supernodes.values()) == sorted(roles(domain))
    assert len(config.edges) == n * (n - 1) // 2
    assert all(len(s.proposers) == 3 for s in config.supernodes.values())
    assert config.decision == "gpt-5-mini"


def test_fixed_puts_every_slot_on_one_llm() -> None:
    config = built("hieramas-fixed", model="gemma-3-27b")
    assert list(config.llms) == ["gemma-3-27b"]
    slots = {llm for s in config.supernodes.values() for llm in (*s.proposers, s.synthesizer)}
    assert slots == {"gemma-3-27b"} and config.decision == "gemma-3-27b"
    assert len(config.supernodes) == len(roles("mmlu"))


def test_random_dag_is_acyclic_connected_and_deterministic_per_seed() -> None:
    nodes = [f"n{i}" for i in range(8)]
    seen = set()
    for seed in range(20):
        edges = b.random_dag(nodes, seed=seed, density=0.3)
        assert edges == b.random_dag(nodes, seed=seed, density=0.3)
        topological_order(nodes, edges)  # raises on a cycle
        assert len(set(edges)) == len(edges)
        touched = {n for e in edges for n in e}
        assert touched == set(nodes)  # spanning tree: nobody isolated
        assert len(edges) >= len(nodes) - 1
        seen.add(tuple(edges))
    assert len(seen) > 10  # different seeds give different DAGs
    assert len(b.random_dag(nodes, seed=0, density=0.0)) == 7
    assert len(b.random_dag(nodes, seed=0, density=1.0)) == 28
    with pytest.raises(b.BaselineError):
        b.random_dag(nodes, seed=0, density=1.5)


def test_random_method_is_seeded() -> None:
    one = b.build("hieramas-random", POOL, "mmlu", b.Options(seed=5))
    assert one == b.build("hieramas-random", POOL, "mmlu", b.Options(seed=5))
    assert one != b.build("hieramas-random", POOL, "mmlu", b.Options(seed=6))
    parse_config(b.to_yaml(one))


def test_local_pool_carries_notional_prices() -> None:
    pool = b.local_pool("http://127.0.0.1:9/v1", ["qwen2.5-coder-0.5b", "smollm2-135m"])
    config = parse_config(b.to_yaml(b.build("single", pool, "humaneval")))
    assert not config.uses_emulator()
    (llm,) = config.llms.values()
    assert llm.notional_prices and llm.price_out > llm.price_in > 0
    assert config.endpoints["local"].base_url == "http://127.0.0.1:9/v1"
    assert (
        config.supernodes["solver"].role != "Project Manager"
    )  # HumanEval's planner gives no code


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: b.build("nope", POOL, "mmlu"), "unknown method"),
        (lambda: b.build("single", POOL, "mmlu", b.Options(model="gpt-9")), "unknown LLM"),
        (lambda: b.build("single", POOL, "cooking"), "unknown domain"),
        (lambda: b.emulated_pool(["gpt-9"]), "not emulated"),
        (lambda: b.build("debate", POOL, "mmlu", b.Options(rounds=0)), "rounds"),
    ],
)
def test_bad_input_is_a_typed_error(call: object, message: str) -> None:
    with pytest.raises(b.BaselineError, match=message):
        call()  # type: ignore[operator]
