"""The credit-assignment trap's profile set: it loads, and it is the default pool's models unchanged."""

from __future__ import annotations

from importlib import resources

from hieramas.emulator.profiles import load_profiles
from hieramas.learner.trainconfig import best_model, cheapest_model, pool_of

TRAP = str(resources.files("hieramas.emulator").joinpath("trap_profiles.yaml"))


def test_the_trap_profiles_load_and_copy_the_default_pool_unchanged() -> None:
    trap, default = load_profiles(TRAP), load_profiles()
    assert trap.name == "credit-assignment-trap"
    assert set(trap.models) == {"gpt-5-mini", "qwen3-80b", "deepseek-v3", "llama-8b"}
    for name, model in trap.models.items():
        assert model == default.models[name], f"{name} differs from emulator/profiles.yaml"
    assert trap.behaviour == default.behaviour
    assert trap.domains == default.domains
    assert trap.role_families == default.role_families


def test_the_weak_model_is_the_cheapest_and_the_weakest_on_mmlu() -> None:
    trap = load_profiles(TRAP)
    pool = pool_of(trap)
    weak = cheapest_model(trap, pool)
    assert weak == "llama-8b"
    mmlu = {m: p.accuracy["mmlu"] for m, p in trap.models.items()}
    assert min(mmlu, key=mmlu.__getitem__) == weak
    assert all(acc - mmlu[weak] >= 0.2 for m, acc in mmlu.items() if m != weak)
    assert best_model(trap, "mmlu", pool) == "gpt-5-mini"
