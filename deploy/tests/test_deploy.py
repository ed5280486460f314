"""The deployment, checked without a Docker engine: docker-compose.yml validates with Debian's
`docker-compose config`, every setting it reads is documented, each image follows the rules
(slim Python 3.11, multi-stage, non-root, health check, pinned packages), the nginx entry point
runs for real in front of two copies and never serves /metrics, and the alert rules and the
dashboard name only metrics the services export."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import nginx_conf  # noqa: E402

SERVICE_IMAGES = {
    "admin": ROOT / "admin" / "Dockerfile",
    "billing": ROOT / "billing" / "Dockerfile",
    "pay_api": ROOT / "pay_api" / "Dockerfile",
    "etl": ROOT / "etl" / "Dockerfile",
    "localstripe": ROOT / "deploy" / "localstripe" / "Dockerfile",
}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    executable = shutil.which("docker-compose")
    assert executable, (
        "docker-compose is missing: `make test` installs it (scripts/ensure_tools.sh)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "POSTGRES_"))}
    return subprocess.run(
        [executable, "--project-directory", str(ROOT), *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


@pytest.fixture(scope="module")
def config() -> dict:
    done = compose("--env-file", ".env.example", "config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_config_is_valid_with_the_documented_settings(config):
    services = config["services"]
    for name in (
        "postgres", "redis", "admin-migrate", "billing-migrate", "pay_api-migrate", "admin",
        "billing", "billing-worker", "pay_api", "pay_api-worker", "etl", "nginx", "localstripe",
        "stripe-cli", "prometheus", "grafana",
    ):  # fmt: skip
        assert name in services, name
    assert services["localstripe"]["profiles"] == ["offline"]
    assert services["stripe-cli"]["profiles"] == ["stripe"]
    assert env_example()["COMPOSE_PROFILES"] == "offline"  # the default for trying it


def test_the_stripe_profile_validates_too():
    done = compose("--env-file", ".env.example", "--profile", "stripe", "config", "--services")
    assert done.returncode == 0, done.stderr
    assert "stripe-cli" in done.stdout.split()


def test_a_missing_secret_stops_compose_before_anything_starts(tmp_path):
    settings = env_example()
    del settings["POSTGRES_PASSWORD"]
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    done = compose("--env-file", str(env_file), "config")
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr


def test_every_setting_compose_reads_is_documented_in_env_example():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert used - env_example().keys() == set()


def test_datastores_have_volumes_and_health_checks(config):
    for name in ("postgres", "redis"):
        service = config["services"][name]
        assert service["healthcheck"]["test"]
        assert service["volumes"], name
    assert {"postgres-data", "redis-data", "etl-state"} <= set(config["volumes"])


def test_migrations_run_once_before_what_uses_each_database(config):
    services = config["services"]
    users = {
        "admin-migrate": ["admin", "etl"],
        "billing-migrate": ["billing", "billing-worker"],
        "pay_api-migrate": ["pay_api", "pay_api-worker"],
    }
    for migrate, dependents in users.items():
        assert services[migrate]["restart"] == "no"
        assert services[migrate]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "deploy" not in services[migrate]  # one copy: never concurrent
        for name in dependents:
            condition = services[name]["depends_on"][migrate]["condition"]
            assert condition == "service_completed_successfully", name
    assert "upgrade" in services["billing-migrate"]["command"]
    assert "ensure_superuser" in " ".join(services["admin-migrate"]["command"])


def test_nginx_is_the_one_entry_point_and_waits_for_readiness(config):
    services = config["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    # nginx, localstripe (the browser loads its Stripe.js) and the 127.0.0.1-only monitoring.
    assert published == {"nginx", "localstripe", "prometheus", "grafana"}
    for port in services["prometheus"]["ports"] + services["grafana"]["ports"]:
        # docker-compose v1 prints "host_ip:published:target", v2 a mapping.
        host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
        assert host_ip == "127.0.0.1"
    for name in ("admin", "billing", "pay_api"):
        assert services["nginx"]["depends_on"][name]["condition"] == "service_healthy"
    assert "/health/ready" in " ".join(services["nginx"]["healthcheck"]["test"])


def test_replicas_are_settings(config):
    services = config["services"]
    for name in ("billing", "billing-worker", "pay_api", "pay_api-worker"):
        assert services[name]["deploy"]["replicas"] == 2
    done = compose(
        "--env-file", ".env.example", "config", env={"BILLING_REPLICAS": "5"}
    )  # fmt: skip
    assert yaml.safe_load(done.stdout)["services"]["billing"]["deploy"]["replicas"] == 5


def test_services_get_only_their_secrets(config):
    services = config["services"]
    assert "STRIPE_SECRET_KEY" not in services["billing"]["environment"]
    assert "STRIPE_SECRET_KEY" in services["pay_api"]["environment"]
    assert "DJANGO_SECRET_KEY" not in services["etl"]["environment"]
    assert services["admin"]["environment"]["SMTP_HOST"] == ""  # the relay: set in .env
    assert services["admin"]["environment"]["SMTP_PORT"] == "587"


def stages(dockerfile: Path) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split into build stages."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


@pytest.mark.parametrize("service", SERVICE_IMAGES)
def test_each_image_is_slim_multi_stage_non_root_with_a_health_check(service):
    dockerfile = SERVICE_IMAGES[service]
    built = stages(dockerfile)
    assert len(built) >= 2, "multi-stage: packages are installed in a build stage"
    for stage in built:
        assert stage[0].startswith("FROM python:3.11-slim"), stage[0]
    final = built[-1]
    assert not [
        line for line in final if re.search(r"pip install|apt-get|gcc|build-essential", line)
    ]
    assert any(line.startswith("COPY --from=build /opt/venv") for line in final)
    user = [line for line in final if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert any(line.startswith("HEALTHCHECK ") for line in final)
    # Every pip install is constrained by the pinned requirements.txt.
    for stage in built:
        for line in stage:
            if "pip install" in line:
                assert line.count("pip install") == line.count("-c /tmp/requirements.txt"), line
    # Whatever is copied from the repository exists (the build context is the root).
    for line in (line for stage in built for line in stage):
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile}: {source}"


def test_the_dockerignore_keeps_secrets_and_local_state_out_of_images():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", "**/.venv", "**/var", "**/.git", "**/tests"):
        assert pattern in ignored


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[<>=~! ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_every_image_dependency_is_pinned_in_requirements_txt():
    pinned = {
        line.split("==")[0].lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    wanted = _requirement_names((ROOT / "admin" / "requirements.in").read_text().splitlines())
    for service in ("billing", "pay_api", "etl"):
        project = tomllib.loads((ROOT / service / "pyproject.toml").read_text())["project"]
        wanted |= _requirement_names(project["dependencies"])
    wanted |= {"localstripe"}
    assert wanted - pinned == set()


def test_alerts_and_dashboard_use_only_exported_metrics():
    sources = "\n".join(
        path.read_text()
        for service in ("billing", "pay_api", "etl")
        for path in (ROOT / service / "src").rglob("*.py")
    )
    exported = set(re.findall(r'"((?:billing|pay_api|etl)_[a-z_]+)"', sources))
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "dashboards" / "cinema-billing.json").read_text()
    )
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    names = {"PaymentStuckPastDeadline", "PayApiOutboxOld", "ReconcilerQueueGrowing"}
    assert names <= {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    for expression in expressions:
        for metric in re.findall(r"\b((?:billing|pay_api|etl)_[a-z_]+)", expression):
            base = re.sub(r"_(bucket|count|sum|total)$", "", metric)
            assert metric in exported or base in exported or f"{base}_total" in exported, metric


class _Copy(http.server.BaseHTTPRequestHandler):
    """A stand-in copy of a service: answers its own name, so the test sees the balancing."""

    def do_GET(self) -> None:
        body = json.dumps({"copy": self.server.server_port, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_nginx_from_the_template_balances_copies_and_hides_metrics(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), (
        "nginx is missing: `make test` installs it (scripts/ensure_tools.sh)"
    )
    copies = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Copy) for _ in range(2)]
    for copy in copies:
        threading.Thread(target=copy.serve_forever, daemon=True).start()
    ports = {name: _free_port() for name in ("ADMIN", "BILLING", "PAY_API")}
    env = {}
    for name, port in ports.items():
        env[f"NGINX_{name}_LISTEN"] = f"127.0.0.1:{port}"
        env[f"NGINX_{name}_SERVERS"] = " ".join(
            f"server 127.0.0.1:{copy.server_port} max_fails=0;" for copy in copies
        )
    for folder in ("run", "log", "nginx"):
        (tmp_path / folder).mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf.render(tmp_path, env))
    check = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-e", str(tmp_path / "log" / "e.log")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    server = subprocess.Popen(
        [nginx, "-c", str(conf), "-e", str(tmp_path / "log" / "e.log"), "-g", "daemon off;"]
    )
    try:
        base = f"http://127.0.0.1:{ports['BILLING']}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        answered = {httpx.get(f"{base}/api/v1/plans").json()["copy"] for _ in range(6)}
        assert answered == {copy.server_port for copy in copies}
        for port in ports.values():
            hidden = httpx.get(f"http://127.0.0.1:{port}/metrics")
            assert hidden.status_code == 404
            assert hidden.json()["code"] == "not_found"
        # A copy that dies is skipped: the request goes to the other one.
        copies[0].shutdown()
        copies[0].server_close()
        assert {httpx.get(f"{base}/x").status_code for _ in range(4)} == {200}
        # No copy left: a JSON error with a stable code, as every service answers.
        copies[1].shutdown()
        copies[1].server_close()
        down = httpx.get(f"{base}/x")
        assert down.status_code == 503
        assert down.json()["code"] == "service_unavailable"
    finally:
        server.terminate()
        server.wait(timeout=10)
