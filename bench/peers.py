"""HieraMAS against the runtimes a user would pick instead, on the same workload, side by side.

The workload is ``bench/overhead.py``'s: 8 supernodes x 3 proposers, 10 edges (depth 4); each
supernode calls its 3 proposers in parallel, then its synthesizer, once all its predecessors
are done; the decision reads every supernode's answer and, as all agree, takes it without a
call (the consensus short-cut), so a query makes 32 LLM calls.  The peers, each written the
idiomatic way for its framework (async nodes or agents, proposers in parallel, the same fan-in):

* **LangGraph** (in-process): a ``StateGraph`` with one async node per supernode, a barrier
  edge from all its predecessors, and a decision node behind all eight;
* **AutoGen-core, in-process**: ``SingleThreadedAgentRuntime`` with proposer, synthesizer,
  supernode and orchestrator ``RoutedAgent``s talking by ``send_message``;
* **AutoGen-core, gRPC host** (distributed): the same agents on a ``GrpcWorkerAgentRuntime``
  whose every message goes through a ``GrpcWorkerAgentRuntimeHost`` in another process (as our
  messages go through nats-server).

The peers run from a separate virtual environment this script creates and caches
(``~/.cache/hieramas/peers-venv``, pinned versions below), in subprocesses, alternating with
our own runs round by round in one session.  For each system it measures:

* throughput over HTTP, 64 queries in flight, against one scripted LLM server
  (``hieramas.llm.loopback``, instant answers) shared by all; HieraMAS also with stock httpx
  (``HIERAMAS_HTTP_TRANSPORT=httpx``);
* orchestration alone, with an instant in-process LLM (an ``async`` function that returns at
  once): the lone query's p50 wall time at the client, queries/s with 64 in flight, and the
  CPU per lone query of the measured process (for HieraMAS the process with the gateway and
  the worker's actors; nats-server and the gRPC host are routers and reported apart).

    python bench/peers.py [--rounds 2] [--queries 300] [--lone 200] [--baseline FARM]

Figures from a shared machine move with its load (printed); compare ratios within a round.
"""

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

PEERS_VENV = Path.home() / ".cache" / "hieramas" / "peers-venv"
PINS = [
    "langgraph==1.2.24",
    "autogen-core==0.7.5",
    "autogen-ext[grpc]==0.7.5",
    "grpcio==1.70.0",
    "httpx==0.29.0",
]
HERE = Path(__file__).resolve()

NODES = [f"n{i}" for i in range(8)]
ROLES = [
    "Knowledgeable Expert", "Critic", "Mathematician", "Psychologist",
    "Historian", "Doctor", "Lawyer", "Economist",
]  # fmt: skip
EDGES = [
    ("n0", "n2"), ("n0", "n3"), ("n1", "n3"), ("n1", "n4"), ("n2", "n5"),
    ("n3", "n5"), ("n3", "n6"), ("n4", "n6"), ("n5", "n7"), ("n6", "n7"),
]  # fmt: skip
PREDS = {n: [s for s, d in EDGES if d == n] for n in NODES}
PROPOSERS = 3
MAX_CONCURRENCY = 8  # per endpoint, as bench/overhead.py's config gives HieraMAS
_ANSWER = re.compile(r"answer is \(?([A-D])\b")

LLM = Callable[[str, str], Awaitable[str]]
"""(model, prompt) -> completion text."""

# -- the peers' shared parts (also run under the peers' venv: no hieramas imports) ----------


def proposer_prompt(role: str, task: str, preds: list[tuple[str, str]]) -> str:
    seen = "".join(f"\n\n{r} said:\n{t}" for r, t in preds)
    return f"You are a {role}. Answer the question.{seen}\n\nQuestion: {task}"


def synth_prompt(role: str, task: str, proposals: list[str], preds: list[tuple[str, str]]) -> str:
    drafts = "".join(f"\n\nDraft {i + 1}:\n{p}" for i, p in enumerate(proposals))
    seen = "".join(f"\n\n{r} said:\n{t}" for r, t in preds)
    return f"You are a {role}. Merge the drafts into one answer.{seen}{drafts}\n\nQuestion: {task}"


def consensus(texts: list[str]) -> str | None:
    """The answer every supernode gives, or ``None`` (then a decision call would be made)."""
    answers = {m.group(1) if (m := _ANSWER.search(t)) else None for t in texts}
    return next(iter(answers)) if len(answers) == 1 and None not in answers else None


def make_llm(url: str | None) -> tuple[LLM, Callable[[], Awaitable[None]]]:
    """An LLM over HTTP (httpx, at most MAX_CONCURRENCY calls at once) or an instant one."""
    if url is None:

        async def instant(model: str, prompt: str) -> str:
            return "The answer is A."

        async def nothing() -> None:
            return None

        return instant, nothing
    import httpx

    client = httpx.AsyncClient(base_url=url, timeout=60)
    gate = asyncio.Semaphore(MAX_CONCURRENCY)

    async def chat(model: str, prompt: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        async with gate:
            response = await client.post("/chat/completions", json=body)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    return chat, client.aclose


Ask = Callable[[str], Awaitable[str | None]]
"""One query's task text -> the decided answer."""


async def langgraph_system(llm: LLM) -> tuple[Ask, Callable[[], Awaitable[None]]]:
    import operator
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        task: str
        outputs: Annotated[dict[str, str], operator.or_]
        answer: str | None

    def supernode(name: str, role: str) -> Callable[[State], Awaitable[dict[str, Any]]]:
        async def run(state: State) -> dict[str, Any]:
            outputs, task = state.get("outputs", {}), state["task"]
            preds = [(ROLES[NODES.index(p)], outputs[p]) for p in PREDS[name]]
            prompt = proposer_prompt(role, task, preds)
            proposals = await asyncio.gather(*(llm("fixed:A", prompt) for _ in range(PROPOSERS)))
            text = await llm("fixed:A", synth_prompt(role, task, list(proposals), preds))
            return {"outputs": {name: text}}

        return run

    async def decision(state: State) -> dict[str, Any]:
        outputs = state["outputs"]
        answer = consensus([outputs[n] for n in NODES])
        if answer is None:
            answer = consensus([await llm("fixed:B", state["task"])])
        return {"answer": answer}

    graph = StateGraph(State)
    for name, role in zip(NODES, ROLES, strict=True):
        graph.add_node(name, supernode(name, role))  # type: ignore[call-overload]
    graph.add_node("decision", decision)  # type: ignore[call-overload]
    for name in NODES:
        preds = PREDS[name]
        if not preds:
            graph.add_edge(START, name)
        else:
            graph.add_edge(preds if len(preds) > 1 else preds[0], name)  # barrier: all preds
    graph.add_edge(NODES, "decision")
    graph.add_edge("decision", END)
    app = graph.compile()

    async def ask(task: str) -> str | None:
        state = await app.ainvoke({"task": task, "outputs": {}})
        return state["answer"]  # type: ignore[no-any-return]

    async def close() -> None:
        return None

    return ask, close


async def autogen_system(llm: LLM, host: str | None) -> tuple[Ask, Callable[[], Awaitable[None]]]:
    from dataclasses import dataclass

    from autogen_core import (
        AgentId,
        MessageContext,
        RoutedAgent,
        SingleThreadedAgentRuntime,
        message_handler,
        try_get_known_serializers_for_type,
    )

    @dataclass
    class Propose:
        role: str
        task: str
        preds: list[list[str]]

    @dataclass
    class Synthesize:
        role: str
        task: str
        proposals: list[str]
        preds: list[list[str]]

    @dataclass
    class Text:
        text: str

    @dataclass
    class RunNode:
        task: str
        preds: list[list[str]]

    @dataclass
    class Query:
        task: str

    @dataclass
    class Decided:
        answer: str  # "" for none (the gRPC runtime's dataclass serializer takes no unions)

    class Proposer(RoutedAgent):
        @message_handler
        async def on_propose(self, message: Propose, ctx: MessageContext) -> Text:
            preds = [(r, t) for r, t in message.preds]
            return Text(await llm("fixed:A", proposer_prompt(message.role, message.task, preds)))

    class Synthesizer(RoutedAgent):
        @message_handler
        async def on_synth(self, message: Synthesize, ctx: MessageContext) -> Text:
            preds = [(r, t) for r, t in message.preds]
            prompt = synth_prompt(message.role, message.task, message.proposals, preds)
            return Text(await llm("fixed:A", prompt))

    class Supernode(RoutedAgent):
        """key = the node: its proposers are ("proposer", "<node>.p<i>")."""

        @message_handler
        async def on_run(self, message: RunNode, ctx: MessageContext) -> Text:
            node = self.id.key
            role = ROLES[NODES.index(node)]
            ask = Propose(role, message.task, message.preds)
            proposals = await asyncio.gather(
                *(
                    self.send_message(ask, AgentId("proposer", f"{node}.p{i}"))
                    for i in range(PROPOSERS)
                )
            )
            texts = [p.text for p in proposals]
            synth = Synthesize(role, message.task, texts, message.preds)
            result: Text = await self.send_message(synth, AgentId("synthesizer", node))
            return result

    class Orchestrator(RoutedAgent):
        """Runs one query's DAG: a node starts once all its predecessors answered."""

        @message_handler
        async def on_query(self, message: Query, ctx: MessageContext) -> Decided:
            done: dict[str, asyncio.Future[str]] = {}

            async def run(name: str) -> str:
                texts = [await done[p] for p in PREDS[name]]
                preds = [
                    [ROLES[NODES.index(p)], t] for p, t in zip(PREDS[name], texts, strict=True)
                ]
                out: Text = await self.send_message(
                    RunNode(message.task, preds), AgentId("supernode", name)
                )
                return out.text

            for name in NODES:  # topological order
                done[name] = asyncio.ensure_future(run(name))
            texts = await asyncio.gather(*(done[n] for n in NODES))
            answer = consensus(list(texts))
            if answer is None:
                answer = consensus([await llm("fixed:B", message.task)])
            return Decided(answer or "")

    runtime: Any
    if host is None:
        runtime = SingleThreadedAgentRuntime()
    else:
        from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntime

        runtime = GrpcWorkerAgentRuntime(host_address=host)
        for cls in (Propose, Synthesize, Text, RunNode, Query, Decided):
            runtime.add_message_serializer(try_get_known_serializers_for_type(cls))
        await runtime.start()
    await Proposer.register(runtime, "proposer", lambda: Proposer("proposer"))
    await Synthesizer.register(runtime, "synthesizer", lambda: Synthesizer("synthesizer"))
    await Supernode.register(runtime, "supernode", lambda: Supernode("supernode"))
    await Orchestrator.register(runtime, "orchestrator", lambda: Orchestrator("orchestrator"))
    if host is None:
        runtime.start()
    target = AgentId("orchestrator", "default")

    async def ask(task: str) -> str | None:
        decided: Decided = await runtime.send_message(Query(task), target)
        return decided.answer or None

    async def close() -> None:
        await runtime.stop()

    return ask, close


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pid_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    ask: Ask, *, lone: int, queries: int, inflight: int, router_pid: int | None
) -> dict[str, Any]:
    """Warm up, then ``lone`` queries one at a time, then ``queries`` with ``inflight`` at once."""
    wrong: list[str | None] = []

    async def one(i: int) -> float:
        started = time.perf_counter()
        answer = await ask(f"bench question {i}")
        if answer != "A":
            wrong.append(answer)
        return time.perf_counter() - started

    await asyncio.gather(*(one(i) for i in range(20)))  # warm-up, 20 at once
    out: dict[str, Any] = {}
    if lone:
        cpu0, router0 = cpu_s(), pid_cpu_s(router_pid) if router_pid else 0.0
        walls = [await one(i) for i in range(lone)]
        out["lone_p50_ms"] = 1000 * statistics.median(walls)
        out["cpu_ms"] = 1000 * (cpu_s() - cpu0) / lone
        if router_pid:
            out["router_cpu_ms"] = 1000 * (pid_cpu_s(router_pid) - router0) / lone
    sem = asyncio.Semaphore(inflight)

    async def gated(i: int) -> None:
        async with sem:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(gated(i) for i in range(queries)))
    out["qps"] = queries / (time.perf_counter() - started)
    if wrong:
        raise SystemExit(f"{len(wrong)} queries gave no consensus answer A: {wrong[:3]}")
    return out


async def run_peer(system: str, url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    llm, close_llm = make_llm(url)
    host = os.environ.get("PEERS_GRPC_HOST")
    if system == "langgraph":
        ask, close = await langgraph_system(llm)
    else:
        ask, close = await autogen_system(llm, host if system == "autogen-grpc" else None)
    try:
        router = int(os.environ["PEERS_ROUTER_PID"]) if system == "autogen-grpc" else None
        return await drive(
            ask, lone=args.lone, queries=args.queries, inflight=args.inflight, router_pid=router
        )
    finally:
        await close()
        await close_llm()


def grpc_host(port: int) -> None:
    """Serve a GrpcWorkerAgentRuntimeHost on ``port`` until killed."""
    from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntimeHost

    async def serve() -> None:
        host = GrpcWorkerAgentRuntimeHost(address=f"127.0.0.1:{port}")
        host.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


# -- HieraMAS (our venv) ----------------------------------------------------------------------


def run_hieramas(url: str, instant: bool, args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent))
    from overhead import InstantClient, config_text

    import hieramas.stack
    from hieramas.controller.client import HieraClient

    if instant:
        hieramas.stack.OpenAIChatClient = lambda **_: InstantClient()  # type: ignore[assignment,misc]
    with hieramas.stack.Stack(workers=1) as stack:
        assert stack.bus is not None and stack.nats is not None and stack.nats.process
        client = HieraClient(stack.bus)
        stack.bus.call(client.apply_config(config_text(url)), 30)

        async def ask(task: str) -> str | None:
            result = await client.ask(task, timeout_s=60)
            if result["status"] != "ok":
                raise SystemExit(f"query failed: {result.get('error')}")
            answer = result.get("answer")
            return str(answer) if answer is not None else None

        coro = drive(
            ask,
            lone=args.lone,
            queries=args.queries,
            inflight=args.inflight,
            router_pid=stack.nats.process.pid,
        )
        return stack.bus.call(coro, 1800)  # type: ignore[no-any-return]


# -- the driver ---------------------------------------------------------------------------------


def ensure_venv() -> Path:
    """The peers' venv, created (pinned versions) or reused; returns its python."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / "pins.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(PINS):
        return python
    print(f"creating {PEERS_VENV} ({', '.join(PINS)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEERS_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *PINS], check=True)
    stamp.write_text("\n".join(PINS))
    return python


def measure_once(
    python: str, system: str, url: str | None, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    cmd = [python, str(HERE), "--measure", system, "--url", url or "instant"]
    cmd += ["--queries", str(args.queries), "--lone", str(args.lone)]
    cmd += ["--inflight", str(args.inflight)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{system} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["load"] = os.getloadavg()[0]
    return result


def fmt(values: list[float], digits: int = 1) -> str:
    lo, hi = min(values), max(values)
    return (
        f"{lo:.{digits}f}"
        if f"{lo:.{digits}f}" == f"{hi:.{digits}f}"
        else (f"{lo:.{digits}f}-{hi:.{digits}f}")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="HieraMAS against LangGraph and AutoGen-core")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queries", type=int, default=300, help="queries for throughput")
    parser.add_argument("--lone", type=int, default=200, help="lone queries (instant LLM)")
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument(
        "--baseline",
        metavar="PYTHONPATH",
        help="also run HieraMAS from this package farm (an older commit; see DEVELOPERS.md)",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--grpc-host", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.grpc_host:
        grpc_host(args.grpc_host)
        return
    if args.measure:
        url = None if args.url == "instant" else args.url
        if args.measure == "hieramas":
            result = run_hieramas(url or "http://127.0.0.1:9/v1", url is None, args)
        else:
            result = asyncio.run(run_peer(args.measure, url, args))
        print(json.dumps(result), flush=True)
        return

    sys.path.insert(0, str(HERE.parent))
    from overhead import start_llm_server

    from hieramas.natsserver import free_port

    peers_python = str(ensure_venv())
    ours = sys.executable
    llm_proc, url = start_llm_server(0.0)
    port = free_port()
    host = subprocess.Popen(
        [peers_python, str(HERE), "--grpc-host", str(port)], stdout=subprocess.PIPE, text=True
    )
    assert host.stdout is not None
    host.stdout.readline()
    grpc_env = {"PEERS_GRPC_HOST": f"127.0.0.1:{port}", "PEERS_ROUTER_PID": str(host.pid)}
    systems: list[tuple[str, str, str, dict[str, str]]] = [
        ("HieraMAS", ours, "hieramas", {}),
        ("LangGraph", peers_python, "langgraph", {}),
        ("AutoGen-core in-process", peers_python, "autogen", {}),
        ("AutoGen-core gRPC host", peers_python, "autogen-grpc", grpc_env),
    ]
    if args.baseline:
        systems.insert(1, ("HieraMAS baseline", ours, "hieramas", {"PYTHONPATH": args.baseline}))
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for round_ in range(args.rounds):
            for label, python, system, env in systems:
                http = measure_once(python, system, url, _no_lone(args), env)
                inst = measure_once(python, system, None, args, env)
                row = {"http_qps": http["qps"], **inst, "load": (http["load"] + inst["load"]) / 2}
                if system == "hieramas":
                    env_httpx = {**env, "HIERAMAS_HTTP_TRANSPORT": "httpx"}
                    row["httpx_qps"] = measure_once(python, system, url, _no_lone(args), env_httpx)[
                        "qps"
                    ]
                runs.setdefault(label, []).append(row)
                print(f"round {round_ + 1} {label}: {json.dumps(row)}", flush=True)
    finally:
        host.terminate()
        host.wait(10)
        llm_proc.terminate()
        llm_proc.wait(10)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    report(runs, args)


def _no_lone(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "lone": 0})


def report(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    labels = list(runs)
    print(f"\n8 supernodes x 3 proposers, {args.rounds} rounds, {args.inflight} in flight")
    print("| measure | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))

    def row(name: str, key: str, digits: int = 1) -> None:
        cells = [
            fmt([r[key] for r in runs[lb]], digits) if key in runs[lb][0] else "" for lb in labels
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")

    row("throughput over HTTP, q/s", "http_qps")
    row("throughput over HTTP, stock httpx in HieraMAS, q/s", "httpx_qps")
    row("orchestration alone: lone p50, ms", "lone_p50_ms", 2)
    row("orchestration alone, q/s", "qps")
    row("orchestration alone, CPU ms per query", "cpu_ms", 2)
    row("  router (nats-server / gRPC host) CPU ms per lone query", "router_cpu_ms", 2)
    row("machine load (1-min average, 2 cores)", "load")
    ours = runs[labels[0]]
    print("\nratios, HieraMAS / peer, same round (lone p50 and CPU: < 1 is better; q/s: > 1):")
    for label in labels[1:]:
        peer = runs[label]
        pairs = list(zip(ours, peer, strict=True))
        p50 = fmt([o["lone_p50_ms"] / p["lone_p50_ms"] for o, p in pairs], 2)
        qps = fmt([o["qps"] / p["qps"] for o, p in pairs], 2)
        cpu = fmt([o["cpu_ms"] / p["cpu_ms"] for o, p in pairs], 2)
        http = fmt([o["http_qps"] / p["http_qps"] for o, p in pairs], 2)
        print(f"  vs {label}: lone p50 x{p50}, q/s x{qps}, CPU x{cpu}, HTTP q/s x{http}")


if __name__ == "__main__":
    main()
