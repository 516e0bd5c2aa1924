"""The deployment files agree with the code: docker-compose.yml, Dockerfile, deploy/nginx.conf.

No Docker engine is needed: compose's own validation (`docker-compose config
-q`), the CLI's parser for every `callhub` command line they run, the settings
table for every CALLHUB_* variable they set, and `nginx -t` on the rendered
load-balancer config.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from callhub.cli.main import build_parser
from callhub.settings import ENVIRONMENT
from tests.support import nginx as load_balancer
from tests.support.paths import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def exec_form(text: str) -> list[str]:
    """A Dockerfile command in exec form (JSON array) or shell form."""
    if text.startswith("["):
        value: list[str] = json.loads(text)
        return value
    return shlex.split(text)


def dockerfile_cmd() -> list[str]:
    commands = [exec_form(arguments) for word, arguments in dockerfile() if word == "CMD"]
    assert len(commands) == 1, "one CMD"
    return commands[0]


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def callhub_command_lines() -> list[tuple[str, list[str]]]:
    """Every `callhub ...` command line the deployment runs, with where it comes from."""
    lines = [("Dockerfile CMD", dockerfile_cmd())]
    for name, service in compose()["services"].items():
        if "command" in service:
            lines.append((f"compose service {name}", as_argv(service["command"])))
        elif service.get("build"):
            lines.append((f"compose service {name} (the image's CMD)", dockerfile_cmd()))
    return [(where, argv) for where, argv in lines if argv and argv[0] == "callhub"]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, arguments in dockerfile():
        if word == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                env[name] = value
    return env


# ---------------------------------------------------------------------------


def test_compose_file_passes_docker_compose_config() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (`make setup` installs it)")
    result = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_compose_runs_the_topology_the_readme_describes() -> None:
    services = compose()["services"]
    assert set(services) >= {"redis", "hub", "lb", "worker", "forward"}
    redis_command = as_argv(services["redis"]["command"])
    assert redis_command[:1] == ["redis-server"]
    assert "--appendonly" in redis_command and "everysec" in redis_command
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert services["hub"]["deploy"]["replicas"] == 3
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["forward"]["deploy"]["replicas"] == 1
    for name in ("hub", "worker", "forward"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "${CALLHUB_LB_PUBLISH:-8080}:8080" in services["lb"]["ports"]  # 8080 by default
    # Every callhub process reads the same Redis, shards and prefix (one anchor).
    environments = [environment_of(services[name]) for name in ("hub", "worker", "forward")]
    assert environments[0]["CALLHUB_REDIS_URL"] == "redis://redis:6379/0"
    # nginx is on the compose network, not loopback: its X-Forwarded-For is trusted.
    assert "172.16.0.0/12" in environments[0]["CALLHUB_TRUSTED_PROXIES"]
    assert all(env == environments[0] for env in environments)


def test_the_forwarder_serves_metrics_on_the_network_and_its_health_check_asks_them() -> None:
    forward = compose()["services"]["forward"]
    args = build_parser().parse_args(as_argv(forward["command"])[1:])
    assert args.command == "forward"
    assert args.metrics_host == "0.0.0.0" and args.metrics_port is not None
    assert str(args.metrics_port) in [str(p) for p in forward["expose"]]
    assert forward["image"] == compose()["services"]["hub"]["image"]  # the same image


def health_check_url(service: dict[str, Any]) -> str | None:
    """The URL a service's health check asks (the image's unless it has its own);
    None when it is disabled."""
    check = service.get("healthcheck")
    if check is None:
        text = dict(dockerfile())["HEALTHCHECK"]
    elif check.get("disable"):
        return None
    else:
        test = check["test"]
        text = " ".join(test) if isinstance(test, list) else test
    found = re.search(r"http://127\.0\.0\.1:\d+/\w+", text)
    assert found, f"a health check that asks a URL: {text}"
    return found.group(0)


@pytest.mark.parametrize("name", ["hub", "worker", "forward"])
def test_a_health_check_asks_a_port_the_service_serves(name: str) -> None:
    service = compose()["services"][name]
    argv = as_argv(service["command"]) if "command" in service else dockerfile_cmd()
    args = build_parser().parse_args(argv[1:])
    url = health_check_url(service)
    if url is None:
        return  # disabled: the process serves nothing to ask (the worker, by default)
    served = {getattr(args, "port", None), getattr(args, "metrics_port", None)} - {None}
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert port in served, f"{name}: its health check asks :{port}, it serves {served}"
    if args.command != "serve":
        assert url.endswith("/metrics")


@pytest.mark.parametrize(("where", "argv"), callhub_command_lines(),
                         ids=[where for where, _ in callhub_command_lines()])
def test_every_callhub_command_line_parses(where: str, argv: list[str]) -> None:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exit_:
            raise AssertionError(
                f"{where}: `{shlex.join(argv)}` does not parse: {errors.getvalue()}"
            ) from exit_


def test_the_rendered_file_limit_is_no_higher_than_the_hard_limit(tmp_path: Path) -> None:
    config = load_balancer.write_config(tmp_path, 1, ["127.0.0.1:1"]).read_text()
    found = re.search(r"^worker_rlimit_nofile (\d+);", config, re.M)
    assert found, "worker_rlimit_nofile"
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or int(found.group(1)) <= hard


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per stage (FROM starts one)."""
    found: list[list[tuple[str, str]]] = []
    for word, arguments in dockerfile():
        if word == "FROM":
            found.append([])
        found[-1].append((word, arguments))
    return found


def test_the_image_is_built_in_two_stages_and_ships_only_the_installed_package() -> None:
    builder, runtime = stages()
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert any(word == "RUN" and "pip wheel" in arguments for word, arguments in builder)
    assert runtime[0][1] == "python:3.11-slim"
    copies = [arguments for word, arguments in runtime if word in {"COPY", "ADD"}]
    assert copies == ["--from=builder /opt/callhub /opt/callhub"]  # no source, no wheels
    env = dockerfile_env()
    assert env["PATH"].startswith("/opt/callhub/bin:")
    user = dict(runtime)["RUN"]
    assert "--create-home" in user and "--home-dir /home/callhub" in user  # a real HOME


def test_the_image_serves_on_all_interfaces_and_checks_healthz() -> None:
    args = build_parser().parse_args(dockerfile_cmd()[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8080)
    instructions = dict(dockerfile())
    assert instructions["FROM"].startswith("python:3.11-slim")
    assert instructions["USER"] not in {"root", "0"}
    health = instructions["HEALTHCHECK"]
    assert "curl" not in health and "urllib.request" in health
    assert re.search(r"http://127\.0\.0\.1:8080/healthz", health)
    assert "EXPOSE" in instructions and instructions["EXPOSE"] == "8080"


def test_every_callhub_variable_set_is_a_setting_with_a_valid_value() -> None:
    sources = {"Dockerfile ENV": dockerfile_env()}
    for name, service in compose()["services"].items():
        sources[f"compose service {name}"] = environment_of(service)
    seen = 0
    for where, env in sources.items():
        for variable, value in env.items():
            if not variable.startswith("CALLHUB_"):
                continue
            assert variable in ENVIRONMENT, f"{where} sets {variable}, which callhub never reads"
            ENVIRONMENT[variable][1](variable, value)  # raises SettingsError on a bad value
            seen += 1
    assert seen, "the compose file configures callhub through CALLHUB_* variables"


def test_the_lb_service_fills_every_placeholder_of_deploy_nginx_conf() -> None:
    lb = compose()["services"]["lb"]
    assert "./deploy/nginx.conf:/etc/nginx/templates/nginx.conf.template:ro" in lb["volumes"]
    env = environment_of(lb)
    assert env["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"  # renders nginx.conf itself
    template = load_balancer.NGINX_CONF.read_text()
    assert load_balancer.placeholders(template) == {
        name for name in env if name.startswith("LB_")}
    # The replicas by name, resolved through Docker's DNS while nginx runs.
    assert (env["LB_RESOLVER"], env["LB_UPSTREAM"], env["LB_UPSTREAMS"]) == (
        "127.0.0.11", "hub:8080", "")
    assert re.fullmatch(r"\$\{CALLHUB_LB_NOFILE:-\d+\}", env["LB_WORKER_RLIMIT_NOFILE"])


def test_deploy_nginx_conf_is_valid_and_streams_sse_unbuffered(tmp_path: Path) -> None:
    if not os.access(load_balancer.NGINX, os.X_OK):
        pytest.skip(f"{load_balancer.NGINX} is not installed (`make setup` installs nginx)")
    result = load_balancer.check_config(tmp_path, ["127.0.0.1:1", "127.0.0.1:2"])
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "nginx.conf").read_text().splitlines()
    rendered = " ".join(" ".join(line.partition("#")[0] for line in lines).split())
    for directive in (
        "proxy_http_version 1.1;", 'proxy_set_header Connection "";', "proxy_buffering off;",
        "proxy_cache off;", "proxy_next_upstream error timeout;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "upstream callhub_replicas { server 127.0.0.1:1; server 127.0.0.1:2; keepalive 32; }",
        "set $callhub_upstream callhub_replicas; proxy_pass http://$callhub_upstream;",
        "resolver 127.0.0.1 valid=2s ipv6=off;",
    ):
        assert directive in rendered, directive
    read_timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", rendered)
    assert read_timeout, "a proxy_read_timeout"
    seconds = int(read_timeout.group(1)) * {"s": 1, "m": 60, "h": 3600}[read_timeout.group(2)]
    assert seconds > 4 * 15, "far longer than the default ping interval (15 s)"
    assert not re.search(r"(^|[;{}] )(pid|daemon|user) ", rendered)  # from the command line


CLUSTER_COMPOSE = ROOT / "docker-compose.cluster.yml"


def cluster_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CLUSTER_COMPOSE.read_text())
    return document


def test_the_cluster_file_passes_docker_compose_config() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (`make setup` installs it)")
    result = subprocess.run([binary, "-f", str(CLUSTER_COMPOSE), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_the_cluster_file_runs_six_nodes_an_init_and_callhub_in_cluster_mode() -> None:
    services = cluster_compose()["services"]
    nodes = [name for name in services if re.fullmatch(r"redis-\d", name)]
    assert len(nodes) == 6
    for name in nodes:
        command = as_argv(services[name]["command"])
        assert command[:3] == ["redis-server", "--cluster-enabled", "yes"]
        assert "--appendonly" in command
    init = services["redis-init"]
    assert "--cluster-replicas 1" in " ".join(as_argv(init["command"]))
    assert set(init["depends_on"]) == set(nodes)
    environments = [environment_of(services[name]) for name in ("hub", "worker", "forward")]
    assert all(env == environments[0] for env in environments)
    env = environments[0]
    assert env["CALLHUB_REDIS_CLUSTER"] == "true" and env["CALLHUB_DURABLE_REPLICAS"] == "1"
    assert int(env["CALLHUB_SHARDS"]) % 3 == 0  # an even spread over the 3 masters
    for variable, value in env.items():
        ENVIRONMENT[variable][1](variable, value)
    for name in ("hub", "worker", "forward"):
        condition = services[name]["depends_on"]["redis-init"]["condition"]
        assert condition == "service_completed_successfully"
    # The same load balancer as the single-node file.
    assert services["lb"]["environment"] == compose()["services"]["lb"]["environment"]
