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


def test_memory_hog() -> None:
    # The CPU limit here is generous because touching the pages costs CPU time: on a machine
    # whose page faults are slow (a sandboxed CI kernel), 256 MB took over the module's 1 s.
    sandbox = Sandbox(SandboxLimits(wall_s=30.0, cpu_s=10, memory_mb=256), max_concurrency=1)
    result = sandbox.run_sync("x = []\nwhile True:\n    x.append(bytearray(10**7))\n")
    assert result.outcome == "memory_limit", (result.outcome, result.stderr[-500:])


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


# --- checks: check(candidate) in a process of its own, proved by a token ------------------

ADD_ONE = "def f(x):\n    return x + 1\n"
TESTS = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(41) == 42\n"


def check_sync(sandbox: Sandbox, program: str, tests: str = TESTS) -> runner.SandboxResult:
    return asyncio.run(sandbox.run_check(program, tests, "f"))


def test_a_check_passes_only_when_check_ran_to_its_end(sandbox: Sandbox) -> None:
    ok = check_sync(sandbox, ADD_ONE)
    assert ok.passed and ok.checked and ok.calls == 2
    wrong = check_sync(sandbox, "def f(x):\n    return x\n")
    assert wrong.outcome == "error" and not wrong.checked and "AssertionError" in wrong.stderr
    # the tests may call the function by its own name, as some HumanEval tests do
    by_name = check_sync(sandbox, ADD_ONE, TESTS + "    assert f(2) == candidate(2) == 3\n")
    assert by_name.passed and by_name.calls == 4
    # a check that never returns (here: it exits itself) proves nothing
    silent = check_sync(sandbox, ADD_ONE, "import os\ndef check(candidate):\n    os._exit(0)\n")
    assert silent.outcome == "unproven" and not silent.passed and silent.returncode == 0


EXITS = {
    "sys.exit": "import sys\nsys.exit(0)\n",
    "os._exit": "import os\nos._exit(0)\n",
    "SystemExit": "raise SystemExit\n",
    "exit()": "exit()\n",
    "quit()": "quit()\n",
    "builtins exit": "import _sitebuiltins as s, builtins\nbuiltins.exit = s.Quitter('exit', 'EOF')\n"
    "exit(0)\n",
    "atexit": "import atexit, os\natexit.register(os._exit, 0)\nraise RuntimeError\n",
    "exit in the call": "",
    "exit on a thread": "import os, threading\nthreading.Timer(0.05, os._exit, (0,)).start()\n",
}


@pytest.mark.parametrize("name", list(EXITS))
def test_early_exits_fail(sandbox: Sandbox, name: str) -> None:
    wrong = "def f(x):\n    return x\n"
    if name == "exit in the call":
        wrong = "def f(x):\n    import os\n    os._exit(0)\n"
    result = check_sync(sandbox, wrong + EXITS[name])
    assert not result.passed and not result.checked
    assert result.outcome in ("early_exit", "error")
    # the same program with the tests appended, run as one program, exits 0 for most
    whole = sandbox.run_sync(wrong + EXITS[name] + TESTS + "check(f)\n")
    if name in ("sys.exit", "os._exit", "SystemExit", "builtins exit", "exit in the call"):
        assert whole.passed  # the hole the check closes


ANYTHING = (
    "class Anything:\n"
    "    def __eq__(self, other): return True\n"
    "    def __ne__(self, other): return False\n"
    "    __hash__ = object.__hash__\n"
)
TAMPERING = {
    "always-equal object": ANYTHING + "def f(x):\n    return Anything()\n",
    "int subclass equal to all": "class I(int):\n    def __eq__(self, o): return True\n"
    "    __hash__ = int.__hash__\ndef f(x):\n    return I(0)\n",
    "check redefined": "def f(x):\n    return x\ndef check(candidate):\n    pass\n"
    "import builtins\nbuiltins.check = check\n",
    "tracer swaps check": "import sys\ndef f(x):\n    return x\n"
    "def t(frame, event, arg):\n"
    "    g = frame.f_globals\n"
    "    if 'check' in g: g['check'].__code__ = (lambda candidate: None).__code__\n"
    "    return t\nsys.settrace(t)\n",
    "builtins patched": ANYTHING + "import builtins\ndef f(x):\n    return x\n"
    "builtins.AssertionError = type('E', (BaseException,), {})\n"
    "builtins.abs = builtins.len = lambda *a: Anything()\n",
    "sys.modules tampered": "import sys, types\ndef f(x):\n    return x\n"
    "sys.modules['builtins'] = types.ModuleType('builtins')\nsys.modules['math'] = None\n",
    "zygote module patched": "import sys\ndef f(x):\n    return x\n"
    "m = sys.modules['__main__']\nm.encode = lambda value: b'[\"ok\",2]'\n",
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_in_the_program_cannot_touch_the_tests(sandbox: Sandbox, name: str) -> None:
    result = check_sync(sandbox, TAMPERING[name])
    assert not result.passed and not result.checked, result.stderr


FORGERY = {
    # bytes on every descriptor, then exit 0: the tests' socket sees garbage, the proof nothing
    "write every fd": "import os\nfor fd in range(3, 256):\n    try:\n"
    "        os.write(fd, b'\\x00\\x00\\x00\\x08[\"ok\",2]')\n    except OSError:\n        pass\n"
    "os._exit(0)\n",
    "print a token": "print('0' * 32, 2)\nimport os\nos._exit(0)\n",
    "read the parent": "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())\n",
    "proc fd of the parent": "import os\nos.write(os.open(f'/proc/{os.getppid()}/fd/3', os.O_WRONLY),"
    " b'x')\n",
    "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "spawn without audit": "import _posixsubprocess\n_posixsubprocess.fork_exec()\n",
    "re-import the spawner": "import sys\nsys.modules.pop('_posixsubprocess', None)\n"
    "import _posixsubprocess\n",
    "sub-interpreter": "import _xxsubinterpreters as s\ns.create()\n",
    "symlink out": "import os\nos.symlink('/etc/passwd', 'p')\n",
}


@pytest.mark.parametrize("name", list(FORGERY))
def test_the_proof_cannot_be_forged_or_reached(sandbox: Sandbox, name: str) -> None:
    result = check_sync(sandbox, "def f(x):\n    return x\n" + FORGERY[name])
    assert not result.passed and not result.checked
    if name == "sub-interpreter":  # the audit hook's refusal surfaces as a RuntimeError
        assert "interpreter creation failed" in result.stderr
    elif name not in ("write every fd", "print a token"):
        assert result.outcome == "blocked", (result.outcome, result.stderr)


def test_a_candidate_reads_and_writes_only_its_own_files(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "tests.jsonl"
    secret.write_text("expected answers")
    secret.chmod(0o644)
    tmp_path.chmod(0o755)
    reads = "def f(x):\n    return len(open(__file__).read()) > 0 and x + 1\n"
    assert check_sync(sandbox, reads).passed  # its own program and the standard library
    writes = "open('scratch', 'w').write('x')\nimport zoneinfo, json, statistics\n" + ADD_ONE
    assert check_sync(sandbox, writes).passed
    for program in (
        f"open({str(secret)!r}).read()\n",
        "open('/etc/passwd').read()\n",
        f"import os\nos.open({str(secret)!r}, os.O_RDONLY)\n",
        f"import os\nos.listdir('/')\nopen('/' + {str(secret)[1:]!r}).read()\n",
        "open('/proc/self/root/etc/passwd').read()\n",
        f"open({str(tmp_path / 'planted.py')!r}, 'w').write('x')\n",
    ):
        result = check_sync(sandbox, program + ADD_ONE)
        assert result.outcome == "blocked", (program, result.stderr)
    assert not (tmp_path / "planted.py").exists()


def test_errors_cross_with_their_type(sandbox: Sandbox) -> None:
    tests = (
        "def check(candidate):\n"
        "    try:\n        candidate(-1)\n    except ValueError as e:\n"
        "        assert 'negative' in str(e)\n    else:\n        raise AssertionError\n"
        "    assert candidate(2) == 3\n"
    )
    program = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x + 1\n"
    result = check_sync(sandbox, program, tests)
    assert result.passed and result.calls == 2
    broken = check_sync(sandbox, "import nonexistent_module\n" + ADD_ONE)
    assert broken.outcome == "error" and "nonexistent_module" in broken.stderr
    missing = check_sync(sandbox, "def g(x):\n    return x + 1\n")
    assert missing.outcome == "error" and "'f' is not defined" in missing.stderr


def test_limits_hold_for_checks(sandbox: Sandbox) -> None:
    slow = "import time\ndef f(x):\n    time.sleep(60)\n"
    limits = SandboxLimits(wall_s=1.0, cpu_s=2)
    timed = asyncio.run(sandbox.run_check(slow, TESTS, "f", limits=limits))
    assert timed.outcome == "timeout" and not timed.checked
    spin = check_sync(sandbox, "def f(x):\n    while True:\n        pass\n")
    assert spin.outcome == "cpu_limit"
    hog = check_sync(sandbox, "def f(x):\n    return bytearray(10**10)\n")
    assert hog.outcome == "memory_limit"
    flood = check_sync(sandbox, "def f(x):\n    while True:\n        print('x' * 1000)\n")
    assert flood.outcome == "output_limit"
    out = check_sync(sandbox, "print('hello from the program')\n" + ADD_ONE)
    assert out.passed and "hello from the program" in out.stdout
