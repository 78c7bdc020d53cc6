"""How to reach NATS: URL, authentication (user/password, token, nkeys, creds) and TLS.

Secrets come from the environment or files, never from command-line
arguments, and :meth:`NatsSettings.redacted_url` is the only form logged.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["NatsSettings", "jetstream_replicas", "redact_url"]

ENV_URL = "HIERAMAS_NATS_URL"
ENV_USER = "HIERAMAS_NATS_USER"
ENV_PASSWORD = "HIERAMAS_NATS_PASSWORD"
ENV_TOKEN = "HIERAMAS_NATS_TOKEN"
ENV_CREDS = "HIERAMAS_NATS_CREDS"
ENV_NKEY_SEED = "HIERAMAS_NATS_NKEY_SEED_FILE"
ENV_TLS_CA = "HIERAMAS_NATS_TLS_CA"
ENV_TLS_CERT = "HIERAMAS_NATS_TLS_CERT"
ENV_TLS_KEY = "HIERAMAS_NATS_TLS_KEY"
ENV_INBOX_PREFIX = "HIERAMAS_NATS_INBOX_PREFIX"

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENV_REPLICAS = "HIERAMAS_JS_REPLICAS"


def redact_url(url: str) -> str:
    """``nats://user:secret@host:4222`` → ``nats://user:***@host:4222`` (also for a token)."""
    redacted = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        if parts.password or (parts.username and "@" in parts.netloc):
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
            user = parts.username if parts.password else ""
            netloc = f"{user}:***@{host}{port}" if user else f"***@{host}{port}"
            parts = parts._replace(netloc=netloc)
        redacted.append(urlunsplit(parts))
    return ",".join(redacted)


def jetstream_replicas() -> int:
    """How many servers keep each stream and bucket this process creates: ``$HIERAMAS_JS_REPLICAS``
    (1 by default; 3 on a three-server cluster, so that losing one server loses nothing)."""
    raw = os.environ.get(ENV_REPLICAS, "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 5:
        raise ValueError(f"${ENV_REPLICAS} must be a whole number from 1 to 5, not {raw[:20]!r}")
    return int(raw)


@dataclass(frozen=True)
class NatsSettings:
    """Connection settings; :meth:`from_env` fills the secrets from the environment."""

    url: str = "nats://127.0.0.1:4222"
    name: str = "hieramas"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    inbox_prefix: str | None = None
    connect_timeout_s: float = 5.0

    @classmethod
    def from_env(cls, url: str | None = None, *, name: str = "hieramas") -> NatsSettings:
        """Settings for ``url`` (or ``$HIERAMAS_NATS_URL``) with auth/TLS from ``HIERAMAS_NATS_*``."""
        env = os.environ
        return cls(
            url=url or env.get(ENV_URL) or cls.url,
            name=name,
            user=env.get(ENV_USER) or None,
            password=env.get(ENV_PASSWORD) or None,
            token=env.get(ENV_TOKEN) or None,
            creds_file=env.get(ENV_CREDS) or None,
            nkey_seed_file=env.get(ENV_NKEY_SEED) or None,
            tls_ca=env.get(ENV_TLS_CA) or None,
            tls_cert=env.get(ENV_TLS_CERT) or None,
            tls_key=env.get(ENV_TLS_KEY) or None,
            inbox_prefix=env.get(ENV_INBOX_PREFIX) or None,
        )

    def with_url(self, url: str) -> NatsSettings:
        """The same credentials for another URL."""
        return replace(self, url=url)

    def redacted_url(self) -> str:
        """The URL with any embedded password or token masked."""
        return redact_url(self.url)

    def inbox(self) -> str:
        """Where replies to this connection go: ``$HIERAMAS_NATS_INBOX_PREFIX`` if set, else
        ``_INBOX.<user>`` for a user name that is one subject token, else ``_INBOX``.

        A per-user inbox lets the server's permissions (``deploy/nats/users.conf``) give
        each component its own replies only: with one shared ``_INBOX.>`` any user could
        subscribe to another's answers.
        """
        if self.inbox_prefix:
            return self.inbox_prefix
        if self.user and _TOKEN.match(self.user):
            return f"_INBOX.{self.user}"
        return "_INBOX"

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        kwargs: dict[str, Any] = {
            "servers": [u.strip() for u in self.url.split(",")],
            "name": self.name,
            "connect_timeout": self.connect_timeout_s,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "inbox_prefix": self.inbox(),
        }
        if self.user:
            kwargs["user"] = self.user
        if self.password:
            kwargs["password"] = self.password
        if self.token:
            kwargs["token"] = self.token
        if self.creds_file:
            kwargs["user_credentials"] = self.creds_file
        if self.nkey_seed_file:
            kwargs["nkeys_seed"] = self.nkey_seed_file
        if self.tls_ca or self.tls_cert or self.url.startswith("tls://"):
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            kwargs["tls"] = context
        return kwargs
