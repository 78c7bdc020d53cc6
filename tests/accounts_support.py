"""A nats-server run with the shipped per-component logins (deploy/nats/users.conf).

The server runs ``deploy/nats/compose.conf`` with only its container paths dropped
(``store_dir``, ``http_port``) and the real ``users.conf`` copied beside it, so the
permissions under test are the files a deployment uses.  The passwords are random per
server; each role's :class:`~hieramas.natsconn.NatsSettings` is :meth:`Accounts.login`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer

REPO = Path(__file__).resolve().parent.parent
NATS_DEPLOY = REPO / "deploy" / "nats"
ROLES = ("controller", "worker", "learner", "exporter", "client")


def password_variable(role: str) -> str:
    """The variable the server reads ``role``'s password from."""
    return f"HIERAMAS_NATS_PASSWORD_{role.upper()}"


def server_conf(directory: Path, *, extra: str = "") -> Path:
    """compose.conf (container paths dropped, ``extra`` appended, e.g. ``include tls.conf``)
    beside copies of users.conf and tls.conf, in ``directory``."""
    text = (NATS_DEPLOY / "compose.conf").read_text()
    local, n = re.subn(r"^\s*(store_dir|http_port):.*$", "", text, flags=re.M)
    assert n == 2, "compose.conf changed shape"
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("users.conf", "tls.conf"):  # what compose.conf includes, or may
        shutil.copy(NATS_DEPLOY / name, directory / name)
    conf = directory / "nats.conf"
    conf.write_text(local + extra)
    return conf


@dataclass(frozen=True)
class Accounts:
    """A running server with the per-component logins, and each role's password."""

    server: NatsServer
    passwords: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def login(self, role: str, **changes: object) -> NatsSettings:
        """``role``'s connection settings (user name = role)."""
        settings = NatsSettings(
            url=self.url,
            name=f"hieramas-{role}",
            user=role,
            password=self.passwords[role],
            connect_timeout_s=2,
        )
        return replace(settings, **changes)

    def env(self, role: str) -> dict[str, str]:
        """A child process's environment with ``role``'s login and no other password."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIERAMAS_NATS_")}
        return {
            **env,
            "HIERAMAS_NATS_URL": self.url,
            "HIERAMAS_NATS_USER": role,
            "HIERAMAS_NATS_PASSWORD": self.passwords[role],
        }

    def server_log(self) -> str:
        return (self.server.store_dir / "nats-server.log").read_text(errors="replace")


@contextmanager
def accounts_server(
    directory: Path, *, extra: str = "", env: dict[str, str] | None = None
) -> Iterator[Accounts]:
    """Start the server with fresh random passwords; they live in this process's environment
    only while the server starts (it reads them once)."""
    passwords = {role: f"pw-{role}-{secrets.token_hex(8)}" for role in ROLES}
    conf = server_conf(directory, extra=extra)
    given = {password_variable(r): p for r, p in passwords.items()} | (env or {})
    saved = {k: os.environ.get(k) for k in given}
    os.environ.update(given)
    try:
        server = NatsServer(store_dir=directory / "js", extra_args=["-c", str(conf)]).start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield Accounts(server, passwords)
    finally:
        server.stop()
