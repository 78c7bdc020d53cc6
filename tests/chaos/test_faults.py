"""Faults across hosts: each scenario runs a query stream through the 3-host cluster while a
part fails, and checks that every query got an answer or an explicit error by its deadline,
and that every trace event JetStream accepted is still at its stream sequence."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
from chaos_support import SUBJECTS, Chaos, ChaosFactory, assert_no_hang, request_inbox, scenario

from hieramas.loadgen import Outcome, QueryLoad
from hieramas.traces import TRACE_STREAM


async def _answered(load: QueryLoad, known: dict[str, str], timeout: float = 15.0) -> Outcome:
    """The latest answer served by a known worker (waiting for one)."""
    for _ in range(int(timeout / 0.1)):
        for outcome in reversed(load.outcomes):
            if any(w in known for w in outcome.workers):
                return outcome
        await asyncio.sleep(0.1)
    raise AssertionError(f"no answer from a known worker within {timeout}s: {load.codes()}")


def _host_of(c: Chaos, name: str) -> int:
    part = c.cluster.parts[name]
    assert part.host is not None
    return part.host.index


def _gateway_servers(c: Chaos) -> dict[int, int]:
    """host of each controller -> host of the server it is connected to (servers' /connz)."""
    found: dict[int, int] = {}
    for host in c.lab.hosts:
        connz = httpx.get(f"{c.cluster.monitor_url(host)}/connz?subs=1", timeout=2).json()
        for conn in connz.get("connections") or []:
            if SUBJECTS.query in (conn.get("subscriptions_list") or []):
                ip = conn.get("ip")
                owner = next((h.index for h in c.lab.hosts if h.ip == ip), host.index)
                found[owner] = host.index  # from 127.0.0.1: a controller on the server's host
    assert found, "no gateway subscription on any server"
    return found


def test_worker_killed_mid_query_its_work_is_redone_by_a_replica(chaos: ChaosFactory) -> None:
    c = chaos()
    c.apply()
    ids = c.worker_ids()
    killed: list[str] = []

    async def kill_a_busy_worker(load: QueryLoad) -> None:
        # the worker that served the latest answer holds work now: SIGKILL it
        latest = await _answered(load, ids)
        name = ids[next(w for w in latest.workers if w in ids)]
        killed.append(name)
        c.cluster.kill(name)

    load, ledger = c.run(scenario(c, kill_a_busy_worker, duration_s=12.0), 90)
    assert_no_hang(load.outcomes, at_least=20)
    assert killed and not c.cluster.parts[killed[0]].alive()
    assert load.kinds()["answer"] == len(load.outcomes), load.codes()  # a replica redid it
    report = c.run(ledger.check())
    answered = {o.query_id for o in load.outcomes if o.kind == "answer"}
    assert answered <= c.run(ledger.query_ids())  # each answer's query event is stored
    print(f"worker kill ({killed[0]}): {dict(load.codes())} {report}")


def test_nats_node_killed_and_restarted(chaos: ChaosFactory) -> None:
    c = chaos()
    c.apply()
    killed: list[str] = []
    killed_at: list[float] = []
    clients_server: list[bool] = []

    async def kill_the_trace_leader(load: QueryLoad) -> None:
        info = await c.bus.js.stream_info(TRACE_STREAM)
        assert info.cluster is not None and info.cluster.leader
        name = f"nats-{info.cluster.leader.removeprefix('hm-h')}"
        server = c.buses["client"].nc.connected_url
        killed.append(name)
        killed_at.append(time.monotonic())
        clients_server.append(
            server is not None and c.cluster.parts[name].port == (server.hostname, server.port)
        )
        c.cluster.kill(name)
        await asyncio.sleep(5.0)
        await asyncio.get_running_loop().run_in_executor(None, c.cluster.restart, name)

    load, ledger = c.run(scenario(c, kill_the_trace_leader, duration_s=14.0), 120)
    # a query in flight on the client's own server when it was killed is sent again until
    # answered (controller/client.py): none waits out its deadline
    assert_no_hang(load.outcomes, at_least=20)
    after = [o for o in load.outcomes if o.started > load.outcomes[0].started + 10.0]
    assert after and all(o.kind == "answer" for o in after), load.codes()
    report = c.run(ledger.check())  # the restarted server caught up; nothing accepted is lost
    assert report["probes"] > 50
    print(
        f"nats kill ({killed[0]}, the client's: {clients_server[0]}): {dict(load.codes())} {report}"
    )


def test_host_partitioned_then_healed_its_worker_rejoins(chaos: ChaosFactory) -> None:
    c = chaos()
    c.apply()
    ids = {name: wid for wid, name in c.worker_ids().items()}
    host = c.lab.hosts[2]  # no controller there: the gateway side stays whole
    inbox = f"hm.inst.{ids['worker-2']}"
    seen: dict[str, str] = {}

    async def partition(load: QueryLoad) -> None:
        c.lab.partition(host)
        await asyncio.sleep(2.0)
        seen["during"] = await request_inbox(c.bus, inbox, timeout=2.0)
        await asyncio.sleep(4.0)
        c.lab.heal(host)

    load, ledger = c.run(scenario(c, partition, duration_s=18.0), 120)
    assert_no_hang(load.outcomes, at_least=20)
    healed = load.outcomes[0].started + 3.0 + 6.0
    after = [o for o in load.outcomes if o.started > healed + 2.0]
    assert after and all(o.kind == "answer" for o in after), load.codes()
    assert seen["during"].startswith("no reply")  # it really was cut off
    for _ in range(40):  # its worker's connection comes back through its own server
        if not (code := c.run(request_inbox(c.bus, inbox, timeout=2.0))).startswith("no reply"):
            break
    assert not code.startswith("no reply"), code  # it refuses the ping: it is back
    report = c.run(ledger.check())  # its server's replica caught up again
    print(f"partition: {dict(load.codes())} {report} worker-2 answers with {code!r}")


def test_controller_killed_with_queries_in_flight(chaos: ChaosFactory) -> None:
    c = chaos()
    c.apply()

    killed: list[str] = []
    killed_at: list[float] = []

    async def kill_a_controller(load: QueryLoad) -> None:
        # the one on the client's server, if any: a queue group prefers a member on the
        # publisher's server, so that controller runs every query in flight
        server = c.buses["client"].nc.connected_url
        assert server is not None
        client_host = next(h.index for h in c.lab.hosts if h.ip == server.hostname)
        servers = await asyncio.get_running_loop().run_in_executor(None, _gateway_servers, c)
        host = next((h for h, s in servers.items() if s == client_host), min(servers))
        killed.append(f"controller-{host}")
        killed_at.append(time.monotonic())
        c.cluster.kill(killed[0])

    load, ledger = c.run(scenario(c, kill_a_controller, duration_s=12.0), 120)
    # a query that reached the controller as it died, before its record was written, is
    # sent again by its client and run by the survivor (controller/failover.py)
    assert_no_hang(load.outcomes, at_least=20)
    report = c.run(ledger.check())
    print(f"controller kill ({killed[0]}): {dict(load.codes())} {report}")


def test_slow_consumer_is_cut_off_bounded_counted_and_rejoins(chaos: ChaosFactory) -> None:
    c = chaos()
    c.apply()
    ids = {name: wid for wid, name in c.worker_ids().items()}
    inbox = f"hm.inst.{ids['worker-2']}"
    blob = b"\x00" * 8192
    flooded: dict[str, float] = {}

    async def stall_and_flood(load: QueryLoad) -> None:
        c.cluster.signal("worker-2", signal.SIGSTOP)  # it reads nothing now
        for i in range(6000):  # 48 MB for it, three times the servers' max_pending
            await c.bus.nc.publish(inbox, blob)
            if i % 500 == 0:
                await c.bus.nc.flush()
        await c.bus.nc.flush()
        await asyncio.sleep(3.0)  # the write deadline passes: the server cuts it off
        flooded.update(c.cluster.rss())
        c.cluster.signal("worker-2", signal.SIGCONT)

    before = c.cluster.rss()
    load, ledger = c.run(scenario(c, stall_and_flood, duration_s=14.0), 120)
    assert_no_hang(load.outcomes, at_least=20)
    slow = sum(int(c.cluster.varz(h).get("slow_consumers", 0)) for h in c.lab.hosts)  # type: ignore[call-overload]
    assert slow >= 1, "no server counted a slow consumer"
    for name in ("nats-0", "nats-1", "nats-2"):  # the server held at most its max_pending
        assert flooded[name] - before[name] < 40, (name, before[name], flooded[name])
    for _ in range(40):  # the worker reconnects and serves its inbox again
        if not (code := c.run(request_inbox(c.bus, inbox, timeout=2.0))).startswith("no reply"):
            break
    assert not code.startswith("no reply"), code
    assert "bus.disconnected" in c.cluster.log_text("worker-2")  # visible in its log
    report = c.run(ledger.check())
    print(f"slow consumer: {dict(load.codes())} slow_consumers={slow} {report} rss {flooded}")
