"""The worker's trusted lookups: which key variables it reads, what a config version resolves."""

from __future__ import annotations

import contextlib

import pytest

from hieramas.actors.trusted import KEY_ENV, KeyPolicy, Refused, ResolvedConfig
from hieramas.controller.config import HieraConfig


def test_key_policy_allows_the_pattern_and_listed_names_never_nats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, " OPENAI_API_KEY, ,HIERAMAS_NATS_TOKEN")
    policy = KeyPolicy.from_env(["TEAM_KEY", "HIERAMAS_NATS_PASSWORD"])
    assert policy.names == {
        "OPENAI_API_KEY",
        "TEAM_KEY",
        "HIERAMAS_NATS_PASSWORD",
        "HIERAMAS_NATS_TOKEN",
    }
    for allowed in ("HIERAMAS_KEY_OPENAI", "HIERAMAS_KEY_", "OPENAI_API_KEY", "TEAM_KEY"):
        assert policy.allows(allowed), allowed
    for refused in (
        "HIERAMAS_NATS_PASSWORD",  # listed, and still never
        "HIERAMAS_NATS_TOKEN",
        "HIERAMAS_NATS_CREDS",
        "OPENROUTER_API_KEY",
        "HOME",
        "hieramas_key_lower",  # the pattern is case-sensitive
        "XHIERAMAS_KEY_A",
    ):
        assert not policy.allows(refused), refused
    assert policy.describe().startswith("HIERAMAS_KEY_*, ")
    assert KeyPolicy().describe() == "HIERAMAS_KEY_*"


def _config(api_key_env: str | None, base_url: str | None = "http://h/v1") -> HieraConfig:
    """A config that skips semantic validation (as a forged store record might)."""
    return HieraConfig.model_validate(
        {
            "endpoints": {
                "ep": {"base_url": base_url, "api_key_env": api_key_env},
                "emu": {"kind": "emulator"},
            },
            "llms": {"m": {"endpoint": "ep", "model": "model-id"}, "e": {"endpoint": "emu"}},
            "supernodes": {"a": {"role": "Critic", "proposers": ["m", "skip"], "synthesizer": "m"}},
            "decision": "m",
        }
    )


def test_resolved_config_gives_records_from_the_config_only() -> None:
    policy = KeyPolicy()
    resolved = ResolvedConfig(
        3, _config("HIERAMAS_KEY_EP"), policy=policy, emulator_url="http://emu/v1/"
    )
    model, endpoint = resolved.call_specs("m")
    assert (model.model_id, model.endpoint) == ("model-id", "ep")
    assert (endpoint.base_url, endpoint.api_key_env) == ("http://h/v1", "HIERAMAS_KEY_EP")
    assert resolved.call_specs("e")[1].base_url == "http://emu/v1"
    assert resolved.call_specs("m")[1] is endpoint  # one record per version: the client's state
    with pytest.raises(Refused) as info:
        resolved.call_specs("skip")
    assert info.value.code == "unknown_llm"
    assert resolved.has_slot("a", "p0") and resolved.has_slot("a", "p1")
    assert resolved.has_slot("a", "synth")
    for node, tag in (("a", "p2"), ("a", "px"), ("a", "q0"), ("b", "p0"), ("a", "p")):
        assert not resolved.has_slot(node, tag), (node, tag)
    assert resolved.has_node("a") and resolved.has_node("decision") and not resolved.has_node("b")


@pytest.mark.parametrize(
    ("api_key_env", "emulator_url", "code"),
    [
        ("HIERAMAS_NATS_PASSWORD", "http://emu/v1", "key_not_allowed"),
        ("OPENAI_API_KEY", "http://emu/v1", "key_not_allowed"),
        ("HIERAMAS_KEY_OK", None, None),
    ],
)
def test_resolved_config_refuses_disallowed_keys_and_missing_urls(
    api_key_env: str, emulator_url: str | None, code: str | None
) -> None:
    policy = KeyPolicy(names=frozenset({"HIERAMAS_NATS_PASSWORD"}))  # listing it changes nothing
    resolved = ResolvedConfig(1, _config(api_key_env), policy=policy, emulator_url=emulator_url)
    if code is None:
        assert resolved.call_specs("m")[1].api_key_env == api_key_env
    else:
        with pytest.raises(Refused) as info:
            resolved.call_specs("m")
        assert info.value.code == code and api_key_env in str(info.value)
    with pytest.raises(Refused) if emulator_url is None else contextlib.nullcontext():
        resolved.call_specs("e")  # kind: emulator, with no URL known: no_base_url
