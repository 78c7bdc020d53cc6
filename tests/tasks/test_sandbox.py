"""The code sandbox: every kind of misbehaviour fails only its own item, with a clear outcome."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hieramas.tasks.sandbox import Sandbox, SandboxLimits, describe, network_isolation, runner

LIMITS = SandboxLimits(wall_s=30.0, cpu_s=1, memory_mb=256, file_size_mb=1, max_output_bytes=4096)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(LIMITS, max_concurrency=2)


@pytest.fixture()
def tcp_server() -> Iterator[tuple[int, list[bytes]]]:
    """A real loopback server that records anything it receives."""
    received: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                received.append(conn.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


def test_isolation_is_detected_and_reported() -> None:
    info = describe()
    assert info["isolation"] == network_isolation()
    assert network_isolation() in ("netns", "netns-userns", "audit-hook")
    if os.geteuid() == 0 and shutil.which("unshare"):
        assert network_isolation() == "netns"


def test_ok_error_and_exit_codes(sandbox: Sandbox) -> None:
    ok = sandbox.run_sync("print(sum(range(10)))")
    assert ok.passed and ok.outcome == "ok" and ok.stdout.strip() == "45" and ok.returncode == 0
    err = sandbox.run_sync("raise ValueError('boom')")
    assert err.outcome == "error" and not err.passed and "ValueError: boom" in err.stderr
    assert sandbox.run_sync("import sys; sys.exit(3)").returncode == 3
    assert sandbox.run_sync("def f(:\n").outcome == "error"


def test_infinite_loop_hits_the_cpu_limit(sandbox: Sandbox) -> None:
    # the wall clock is generous: on a loaded machine CPU seconds accrue slower than real ones
    result = sandbox.run_sync("while True:\n    pass\n", limits=SandboxLimits(wall_s=60, cpu_s=1))
    assert result.outcome == "cpu_limit"


def test_sleeping_program_hits_the_wall_clock(sandbox: Sandbox) -> None:
    limits = SandboxLimits(wall_s=1.0, cpu_s=2)
    result = sandbox.run_sync("import time\ntime.sleep(60)\n", limits=limits)
    assert result.outcome == "timeout" and result.returncode is None
    assert result.wall_s < 10


def test_fork_bomb_is_stopped(sandbox: Sandbox) -> None:
    result = sandbox.run_sync("import os\nwhile True:\n    os.fork()\n")
    assert result.outcome == "blocked" and "os.fork" in result.stderr
    result = sandbox.run_sync("import subprocess\nsubprocess.run(['sh', '-c', 'echo hi'])\n")
    assert result.outcome == "blocked"
    assert sandbox.run_sync("import os\nos.system('echo hi')").outcome == "blocked"


def test_network_is_unreachable(sandbox: Sandbox, tcp_server: tuple[int, list[bytes]]) -> None:
    port, received = tcp_server
    code = (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "s.sendall(b'escaped')\n"
    )
    result = sandbox.run_sync(code)
    assert result.outcome == "blocked" and not result.passed
    assert received == []
    # the same client code does reach the server from outside the sandbox
    with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
        client.sendall(b"host")
    for _ in range(50):
        if received:
            break
        threading.Event().wait(0.05)
    assert received == [b"host"]


def test_huge_output_is_capped(sandbox: Sandbox) -> None:
    result = sandbox.run_sync("while True:\n    print('x' * 1000)\n")
    assert result.outcome == "output_limit"
    assert result.truncated and len(result.stdout) <= LIMITS.max_output_bytes
    big = sandbox.run_sync("print('y' * 100_000)")
    assert big.passed and big.truncated and len(big.stdout) == LIMITS.max_output_bytes


def test_memory_hog(sandbox: Sandbox) -> None:
    result = sandbox.run_sync("x = []\nwhile True:\n    x.append(bytearray(10**7))\n")
    assert result.outcome == "memory_limit"


def test_file_size_limit(sandbox: Sandbox) -> None:
    result = sandbox.run_sync("open('big', 'wb').write(b'0' * (2 * 2**20))\n")
    assert result.outcome == "file_size_limit"


def test_escape_attempts(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIERAMAS_TEST_SECRET_KEY", "s3cret")
    env = sandbox.run_sync("import os\nprint(dict(os.environ))\nprint(os.getcwd())\n")
    assert (
        env.passed and "s3cret" not in env.stdout and "HIERAMAS_TEST_SECRET_KEY" not in env.stdout
    )
    workdir = env.stdout.strip().splitlines()[-1]
    assert Path(workdir).name.startswith("hieramas-sbx-") and not Path(workdir).exists()
    assert sandbox.run_sync(f"import os\nos.kill({os.getpid()}, 9)").outcome == "blocked"
    assert sandbox.run_sync("import ctypes").outcome == "blocked"
    raise_limit = "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))"
    assert sandbox.run_sync(raise_limit).outcome == "blocked"
    target = tmp_path / "host-file"
    target.write_text("precious")
    result = sandbox.run_sync(f"open({str(target)!r}, 'w').write('x')")
    if describe()["uid"] != 0:  # dropped to an unprivileged user: the host's files are safe
        assert result.outcome == "error" and "PermissionError" in result.stderr
    assert target.read_text() == "precious" or describe()["uid"] == 0


def test_bad_items_do_not_harm_good_ones() -> None:
    sandbox = Sandbox(LIMITS, max_concurrency=4)
    codes = [
        "print('good-0')",
        "while True:\n    pass\n",
        "import os\nwhile True:\n    os.fork()\n",
        "x = bytearray(10**10)",
        "while True:\n    print('z' * 1000)\n",
        "print('good-1')",
    ]
    results = sandbox.run_many_sync(codes)
    assert [r.outcome for r in results] == [
        "ok",
        "cpu_limit",
        "blocked",
        "memory_limit",
        "output_limit",
        "ok",
    ]
    assert results[0].stdout.strip() == "good-0" and results[-1].stdout.strip() == "good-1"


async def test_concurrency_is_bounded() -> None:
    sandbox = Sandbox(SandboxLimits(wall_s=10), max_concurrency=2)
    code = "import time\nprint(time.time())\ntime.sleep(0.4)\nprint(time.time())\n"
    results = await sandbox.run_many([code] * 5)
    spans = [tuple(float(x) for x in r.stdout.split()) for r in results]
    assert all(r.passed for r in results)
    # at no instant were more than two programs running
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2
    # and the async API really runs concurrently with other coroutines
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(5):
            await asyncio.sleep(0.02)
            ticks += 1

    await asyncio.gather(sandbox.run("import time; time.sleep(0.3)"), ticker())
    assert ticks == 5


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        Sandbox(max_concurrency=0)


async def test_fork_server_death_is_survived() -> None:
    sandbox = Sandbox(SandboxLimits(wall_s=20))
    assert (await sandbox.run("print('before')")).passed
    (zygote,) = runner._zygotes.values()
    running = asyncio.create_task(sandbox.run("import time\ntime.sleep(10)\n"))
    await asyncio.sleep(0.3)
    os.killpg(zygote._proc.pid, signal.SIGKILL)  # the fork server dies mid-run
    lost = await running
    assert lost.outcome == "sandbox_error" and not lost.passed
    after = await sandbox.run("print('after')")  # a new fork server takes over
    assert after.passed and after.stdout.strip() == "after"
    assert runner._zygotes and next(iter(runner._zygotes.values())) is not zygote


def test_stdin_is_passed() -> None:
    result = asyncio.run(Sandbox().run("print(input()[::-1])", stdin=b"abc\n"))
    assert result.passed and result.stdout.strip() == "cba"
