"""The user-written configuration: endpoints, LLMs, supernodes, DAG edges, decision LLM.

Configs are YAML.  :func:`parse_config` turns text into a validated
:class:`HieraConfig` or raises :class:`ConfigError` listing *every* problem
with its location (``supernodes.critic.proposers[1]: unknown LLM 'gpt-9'``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hieramas.llm.types import EndpointSpec, ModelSpec
from hieramas.wire.subjects import DECISION_NODE, NODE_NAME

__all__ = [
    "DEFAULT_KEY_PATTERN",
    "KEY_VARIABLE",
    "NATS_VARIABLES",
    "PASS",
    "PSEUDO_LLMS",
    "SKIP",
    "VOTE",
    "ConfigError",
    "EndpointConfig",
    "HieraConfig",
    "LLMConfig",
    "LimitsConfig",
    "PlannerConfig",
    "SupernodeConfig",
    "parse_config",
    "topological_order",
]

SKIP = "skip"
"""The LLM name that means "no call": a skipped proposer, or (as synthesizer) a dropped supernode."""
VOTE = "vote"
"""As synthesizer or decision: the plurality answer of the inputs, without an LLM call."""
PASS = "pass"
"""As synthesizer: the supernode's output is its first successful proposal, without a call."""
PSEUDO_LLMS = frozenset({SKIP, VOTE, PASS})
DEFAULT_KEY_PATTERN = "HIERAMAS_KEY_*"
"""The environment variables a worker reads API keys from, unless it is given other names."""
NATS_VARIABLES = "HIERAMAS_NATS_"
"""The prefix of the NATS connection settings and credentials: never an API key."""
KEY_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ConfigError(ValueError):
    """An invalid configuration; ``problems`` lists each one as ``location: message``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid config:\n  - " + "\n  - ".join(self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointConfig(_Strict):
    """An OpenAI-compatible server. ``kind: emulator`` means the embedded emulator's URL."""

    kind: Literal["openai", "emulator"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = Field(
        default=None,
        description="name of the env var holding the key; workers read only HIERAMAS_KEY_* "
        "or the names they are given (--key-env)",
    )
    timeout_s: float = Field(default=60.0, gt=0)
    max_concurrency: int = Field(default=16, ge=1)
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=3, ge=0)


class LLMConfig(_Strict):
    """One LLM of the pool; ``model`` is its id at the endpoint (defaults to the pool name)."""

    endpoint: str
    model: str | None = None
    price_in: float = Field(default=0.0, ge=0, description="US$ per million prompt tokens")
    price_out: float = Field(default=0.0, ge=0, description="US$ per million completion tokens")
    notional_prices: bool = False


class SupernodeConfig(_Strict):
    """One role: N proposer LLMs (``skip`` allowed) and one synthesizer LLM."""

    role: str
    proposers: list[str]
    synthesizer: str


class PlannerConfig(BaseModel):
    """Which planner chooses each query's assignment: a registered ``kind``
    (:mod:`hieramas.controller.planners`) and that kind's own options (any other key)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = "static"
    heavy: bool | None = Field(
        default=None,
        description="plan in a thread pool off the NATS loop (default: the planner's own choice)",
    )

    @property
    def options(self) -> dict[str, Any]:
        """The kind-specific options (every key but ``kind`` and ``heavy``)."""
        return dict(self.model_extra or {})


class LimitsConfig(_Strict):
    """Per-query budgets and sampling settings."""

    query_timeout_s: float = Field(default=120.0, gt=0, le=86_400)
    node_timeout_s: float = Field(default=60.0, gt=0, le=86_400)
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)


class HieraConfig(_Strict):
    """A whole HieraMAS system. Build it with :func:`parse_config` to get it validated."""

    name: str = "hieramas"
    domain: str = "general"
    endpoints: dict[str, EndpointConfig]
    llms: dict[str, LLMConfig]
    supernodes: dict[str, SupernodeConfig]
    edges: list[tuple[str, str]] = Field(default_factory=list)
    decision: str
    alone_prompt: Literal["cot", "direct"] = Field(
        default="cot",
        description="how the decision LLM is prompted when it answers alone (every supernode "
        "skipped or failed): chain of thought, or a direct answer without reasoning",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    planner: PlannerConfig | None = Field(
        default=None,
        description="the planner of this config's queries (default: the controller's "
        "--planner, else static)",
    )
    placement: dict[str, list[str]] = Field(
        default_factory=dict,
        description="worker group -> node ids ('decision' for the decision node) it must host",
    )

    def group_of(self, node: str) -> str | None:
        """The worker group a node is placed in (``None``: any ungrouped worker)."""
        return next((g for g, nodes in self.placement.items() if node in nodes), None)

    def predecessors(self, node: str) -> list[str]:
        """Nodes with an edge into ``node``, in config order."""
        return [src for src, dst in self.edges if dst == node]

    def successors(self, node: str) -> list[str]:
        """Nodes ``node`` has an edge to, in config order."""
        return [dst for src, dst in self.edges if src == node]

    def model_spec(self, llm: str) -> ModelSpec:
        """The call-level record for pool LLM ``llm``."""
        cfg = self.llms[llm]
        return ModelSpec(
            name=llm,
            model_id=cfg.model or llm,
            endpoint=cfg.endpoint,
            price_in_per_m=cfg.price_in,
            price_out_per_m=cfg.price_out,
            notional_prices=cfg.notional_prices,
        )

    def endpoint_spec(self, name: str, emulator_url: str | None = None) -> EndpointSpec:
        """The call-level record for endpoint ``name`` (``emulator_url`` fills ``kind: emulator``)."""
        cfg = self.endpoints[name]
        base_url = cfg.base_url or (emulator_url if cfg.kind == "emulator" else None)
        if not base_url:
            raise ConfigError(
                [f"endpoints.{name}: no base_url and no embedded emulator is running"]
            )
        return EndpointSpec(
            name=name,
            base_url=base_url.rstrip("/"),
            api_key_env=cfg.api_key_env,
            timeout_s=cfg.timeout_s,
            max_concurrency=cfg.max_concurrency,
            rate_limit_per_s=cfg.rate_limit_per_s,
            max_retries=cfg.max_retries,
        )

    def uses_emulator(self) -> bool:
        """True when any LLM is served by an emulator endpoint (results must say *emulated*)."""
        return any(self.endpoints[llm.endpoint].kind == "emulator" for llm in self.llms.values())


RoleCatalogue = Callable[[str], Iterable[str]]


def parse_config(text: str | bytes, *, roles: RoleCatalogue | None = None) -> HieraConfig:
    """Parse YAML text into a validated config, or raise :class:`ConfigError`.

    ``roles(domain)`` lists the roles a domain knows; by default the task
    catalogue of :mod:`hieramas.tasks.prompts` (when installed) is used.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError(["top level: expected a mapping of config sections"])
    try:
        config = HieraConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc)) from exc
    problems = validate(config, roles=roles if roles is not None else _default_roles())
    if problems:
        raise ConfigError(problems)
    return config


def validate(config: HieraConfig, *, roles: RoleCatalogue | None = None) -> list[str]:
    """Every semantic problem of ``config`` (empty when it is valid)."""
    problems: list[str] = []
    for name, endpoint in config.endpoints.items():
        if endpoint.api_key_env and not KEY_VARIABLE.match(endpoint.api_key_env):
            problems.append(
                f"endpoints.{name}.api_key_env: {endpoint.api_key_env!r} is not an environment "
                "variable name (letters, digits and '_')"
            )
        elif endpoint.api_key_env and endpoint.api_key_env.startswith(NATS_VARIABLES):
            problems.append(
                f"endpoints.{name}.api_key_env: {endpoint.api_key_env!r} holds a NATS "
                f"credential; workers never send one to an endpoint (use {DEFAULT_KEY_PATTERN})"
            )
    for name, llm_cfg in config.llms.items():
        if name in PSEUDO_LLMS:
            problems.append(f"llms.{name}: '{name}' is reserved (skip, vote and pass are not LLMs)")
        if llm_cfg.endpoint not in config.endpoints:
            problems.append(f"llms.{name}.endpoint: unknown endpoint {llm_cfg.endpoint!r}")
    known_roles: set[str] | None = None
    if roles is not None:
        try:
            known_roles = set(roles(config.domain))
        except (KeyError, ValueError) as exc:
            problems.append(f"domain: unknown domain {config.domain!r} ({exc})")
    if not config.supernodes:
        problems.append("supernodes: at least one supernode is required")
    for node, spec in config.supernodes.items():
        where = f"supernodes.{node}"
        if node == DECISION_NODE or not NODE_NAME.match(node):
            problems.append(
                f"{where}: invalid node id (letters, digits, '_' or '-', not '{DECISION_NODE}')"
            )
        if known_roles is not None and spec.role not in known_roles:
            problems.append(
                f"{where}.role: unknown role {spec.role!r} for domain {config.domain!r} "
                f"(known: {', '.join(sorted(known_roles))})"
            )
        if not spec.proposers:
            problems.append(f"{where}.proposers: a supernode needs at least one proposer slot")
        for i, llm in enumerate(spec.proposers):
            if llm != SKIP and llm not in config.llms:
                problems.append(f"{where}.proposers[{i}]: unknown LLM {llm!r}")
        if spec.synthesizer not in PSEUDO_LLMS and spec.synthesizer not in config.llms:
            problems.append(f"{where}.synthesizer: unknown LLM {spec.synthesizer!r}")
        if spec.synthesizer in (VOTE, PASS) and spec.proposers and set(spec.proposers) == {SKIP}:
            problems.append(
                f"{where}.synthesizer: {spec.synthesizer!r} chooses among proposals, but every "
                f"proposer of supernode {node!r} is 'skip' (give it an LLM to answer alone, "
                "or 'skip' to drop the supernode)"
            )
    if config.decision != VOTE and config.decision not in config.llms:
        problems.append(f"decision: unknown LLM {config.decision!r}")
    if config.planner is not None:
        from hieramas.controller.planners import planner_kinds  # it imports this module

        if config.planner.kind not in planner_kinds():
            problems.append(
                f"planner.kind: unknown planner {config.planner.kind!r} "
                f"(known: {', '.join(planner_kinds())})"
            )
    placed: dict[str, str] = {}
    for group, members in config.placement.items():
        if not NODE_NAME.match(group):
            problems.append(f"placement.{group}: invalid group name (letters, digits, '_' or '-')")
        for member in members:
            if member != DECISION_NODE and member not in config.supernodes:
                problems.append(f"placement.{group}: no supernode {member!r}")
            elif member in placed:
                problems.append(
                    f"placement.{group}: {member!r} is already placed in group {placed[member]!r}"
                )
            placed[member] = group
    seen: set[tuple[str, str]] = set()
    for i, (src, dst) in enumerate(config.edges):
        for end in (src, dst):
            if end not in config.supernodes:
                problems.append(f"edges[{i}]: dangling edge {src} -> {dst}: no supernode {end!r}")
        if src == dst:
            problems.append(f"edges[{i}]: self-loop on {src!r}")
        if (src, dst) in seen:
            problems.append(f"edges[{i}]: duplicate edge {src} -> {dst}")
        seen.add((src, dst))
    if not any(p.startswith("edges[") for p in problems):
        try:
            topological_order(list(config.supernodes), config.edges)
        except ValueError as exc:
            problems.append(f"edges: {exc}")
    return problems


def topological_order(nodes: list[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Nodes in a dependency order (Kahn, stable); ``ValueError`` naming a cycle if there is one."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    indeg = dict.fromkeys(nodes, 0)
    for src, dst in edges:
        succ[src].append(dst)
        indeg[dst] += 1
    ready = [n for n in nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for nxt in succ[node]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                ready.append(nxt)
    if len(order) < len(nodes):
        raise ValueError(f"the graph has a cycle through {_find_cycle(succ, set(order))}")
    return order


def _find_cycle(succ: dict[str, list[str]], done: set[str]) -> str:
    start = next(n for n in succ if n not in done)
    path: list[str] = []
    node = start
    while node not in path:
        path.append(node)
        node = next(n for n in succ[node] if n not in done)
    cycle = [*path[path.index(node) :], node]
    return " -> ".join(cycle)


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "top level"
        problems.append(f"{loc}: {err['msg']}")
    return problems


def _default_roles() -> RoleCatalogue | None:
    try:
        from hieramas.tasks import prompts
    except ImportError:
        return None
    catalogue: Any = getattr(prompts, "roles", None)
    return catalogue if callable(catalogue) else None
