"""`python -m etl --once` as the process manager runs it: settings from the environment, JSON logs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from billing_stub import TEST_SECRET
from prometheus_client.parser import text_string_to_metric_families


def run_etl(env_overrides: dict, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ETL_")}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "etl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def log_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def cli_env(settings) -> dict:
    return {
        "ADMIN_DATABASE_URL": settings.admin_database_url,
        "BILLING_URL": settings.billing_url,
        "SERVICE_JWT_SECRET": TEST_SECRET,
        "ETL_STATE_FILE": str(settings.state_file),
        "ETL_HTTP_ATTEMPTS": "2",
        "ETL_BACKOFF_BASE_SECONDS": "0.01",
    }


def test_once_delivers_and_logs_one_json_line_per_batch(admin, billing, settings):
    film = admin.add_film("Metropolis")
    admin.add_plan("Silent era", films=[film])

    done = run_etl(cli_env(settings), "--once")

    assert done.returncode == 0, done.stderr
    assert billing.films[film]["title"] == "Metropolis"
    batches = [entry for entry in log_lines(done.stdout) if entry.get("event") == "batch"]
    assert [(b["stream"], b["changed"], b["rejected"]) for b in batches] == [
        ("films", 1, 0),
        ("plans", 1, 0),
    ]
    assert settings.state_file.exists()


def test_once_exits_non_zero_when_billing_is_down(admin, billing, settings):
    admin.add_film("Unsent")
    billing.fail_status = 503

    done = run_etl(cli_env(settings), "--once")

    assert done.returncode == 1
    assert any(entry.get("event") == "pass_failed" for entry in log_lines(done.stdout))
    assert not settings.state_file.exists()


def test_refuses_to_start_without_the_service_secret(settings):
    env = cli_env(settings)
    env["SERVICE_JWT_SECRET"] = ""
    done = run_etl(env, "--once")
    assert done.returncode == 2
    assert "SERVICE_JWT_SECRET" in done.stdout


def test_loop_delivers_changes_and_stops_cleanly_on_sigterm(admin, billing, settings):
    film = admin.add_film("Loop film")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ETL_")}
    env.update(cli_env(settings), ETL_INTERVAL_SECONDS="0.1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "etl"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        # Wait (bounded) for the first pass, then change a row and wait for the next one.
        deadline = time.monotonic() + 30
        while film not in billing.films and time.monotonic() < deadline:
            time.sleep(0.05)
        admin.update_film(film, title="Loop film, renamed")
        while billing.films.get(film, {}).get("title") != "Loop film, renamed":
            assert time.monotonic() < deadline, "the loop did not deliver the change"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, _ = worker.communicate(timeout=30)

    assert worker.returncode == 0
    assert log_lines(stdout)[-1]["event"] == "stop"


def test_loop_serves_its_lag_and_passes_for_prometheus(admin, billing, settings):
    admin.add_film("Scraped film")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ETL_")}
    env.update(cli_env(settings), ETL_INTERVAL_SECONDS="0.1", ETL_METRICS_PORT=str(port))
    worker = subprocess.Popen(
        [sys.executable, "-m", "etl"], env=env, stdout=subprocess.DEVNULL, text=True
    )
    samples: dict[tuple, float] = {}
    try:
        deadline = time.monotonic() + 30
        while samples.get(("etl_rows_total", (("result", "changed"),))) != 1:
            assert time.monotonic() < deadline, f"no pass in the metrics: {samples}"
            time.sleep(0.1)
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.TransportError:
                continue
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(scraped)
                for sample in family.samples
            }
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    assert samples[("etl_passes_total", (("outcome", "ok"),))] >= 1
    # Passes run every 0.1 s: billing's catalog trails the admin by well under the interval bound.
    assert 0 <= samples[("etl_lag_seconds", ())] < 10
