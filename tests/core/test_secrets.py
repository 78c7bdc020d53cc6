"""Secrets never reach logs: URL credentials, keys and bearer tokens are masked."""

from __future__ import annotations

import io
import json
import sys

import structlog

from hieramas.logs import configure_logging
from hieramas.natsconn import NatsSettings, redact_url


def test_redact_url_masks_password_and_token() -> None:
    assert redact_url("nats://alice:s3cret@10.0.0.1:4222") == "nats://alice:***@10.0.0.1:4222"
    assert redact_url("nats://tok3n@host:4222") == "nats://***@host:4222"
    assert redact_url("nats://a:b@h1:1,nats://h2:2") == "nats://a:***@h1:1,nats://h2:2"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_settings_repr_and_env(monkeypatch: object) -> None:
    import os

    os.environ["HIERAMAS_NATS_PASSWORD"] = "hunter2"
    try:
        settings = NatsSettings.from_env("nats://bob@h:4222")
        assert settings.password == "hunter2"
        assert "hunter2" not in repr(settings)
        assert settings.connect_kwargs()["password"] == "hunter2"
    finally:
        del os.environ["HIERAMAS_NATS_PASSWORD"]


def test_log_pipeline_masks_secrets() -> None:
    buffer = io.StringIO()
    old = sys.stderr
    sys.stderr = buffer
    try:
        configure_logging("info", json=True)
        structlog.get_logger("t").warning(
            "connecting",
            url="nats://alice:s3cret@h:4222",
            api_key="sk-live-123",
            api_key_env="OPENROUTER_API_KEY",
            header="Authorization: Bearer sk-abc.def",
        )
    finally:
        sys.stderr = old
        structlog.reset_defaults()
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert "s3cret" not in buffer.getvalue()
    assert "sk-live-123" not in buffer.getvalue()
    assert "sk-abc" not in buffer.getvalue()
    assert line["api_key_env"] == "OPENROUTER_API_KEY"
