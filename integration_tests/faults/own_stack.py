"""A whole stack of the system for fault work: its own ports, databases and data folder; pay_api
reaching Stripe through the fault-injecting proxy and able to crash at named points; the worker
and reconciler on a schedule of seconds. The integration tests and the chaos run start one each."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from integration_tests.clients.stack import ROOT, StackSettings
from integration_tests.faults.proxy import FaultProxy


def stack_env(port_base: int, name: str, redis_db: int) -> dict[str, str]:
    """Settings of a stack on ports port_base (+0 admin, +1 billing, +2 pay_api: nginx in front of
    the admin on +10 and two copies of billing on +11, +21 and of pay_api on +12, +22; +25/+26 the
    mail server's HTTP/SMTP, +420 localstripe, +421 the proxy in front of it), databases
    `cinema_<name>_*`, data in var/<name>."""
    if port_base + 421 >= 32768:
        # Linux hands out 32768-60999 to outgoing connections: a listener there can find its port
        # taken by some client socket of the moment (seen with 38420 under the chaos load).
        raise ValueError(f"port base {port_base}: keep the stack's ports below 32768")
    data_dir = ROOT / "var" / name
    return {
        "ADMIN_PORT": str(port_base),
        "BILLING_PORT": str(port_base + 1),
        "PAY_API_PORT": str(port_base + 2),
        "LOCALSTRIPE_PORT": str(port_base + 420),
        "MAIL_PORT": str(port_base + 25),
        "MAIL_SMTP_PORT": str(port_base + 26),
        "DB_PREFIX": f"cinema_{name}",
        "REDIS_DB": str(redis_db),
        "DATA_DIR": str(data_dir),
        "STRIPE_OFFLINE": "1",
        # the reconciler and the worker run in seconds here, so lost webhooks are recovered quickly
        "BILLING_WORKER_INTERVAL_SECONDS": "0.5",
        "BILLING_RECONCILE_BASE_SECONDS": "1",
        "BILLING_RECONCILE_MAX_SECONDS": "5",
        "ETL_INTERVAL_SECONDS": "1",
        # two copies of each worker, so SKIP LOCKED is exercised for real, and two copies of
        # billing's API and of pay_api behind nginx, as in production (docker-compose.yml)
        "WORKER_COPIES": "2",
        "BILLING_COPIES": "2",
        "PAY_API_COPIES": "2",
        # one process a copy: four web processes of billing and pay_api share the test server's
        # PostgreSQL connections with everything else
        "BILLING_WEB_WORKERS": "1",
        "PAY_API_WEB_WORKERS": "2",
        "PAY_API_OUTBOX_BACKOFF_MAX": "2",
        # a lease on a row whose holder died (a killed billing) runs out in seconds here
        "BILLING_WORKER_CLAIM_SECONDS": "15",
        # pay_api reaches Stripe through the fault-injecting proxy (the browser goes straight to
        # localstripe), and may be told to crash at named points (pay_api/failpoints.py)
        "STRIPE_API_BASE": f"http://127.0.0.1:{port_base + 421}",
        "PAY_API_FAILPOINTS_DIR": str(data_dir / "failpoints"),
        # The test load is legitimate but all of it comes from 127.0.0.1, and some tests fire 50
        # requests of one user at once: limits that still bound a runaway loop, far above it.
        "BILLING_RATE_LIMIT_PER_ADDRESS": "100000/minute",
        "BILLING_RATE_LIMIT_PER_USER": "1000/minute",
        "PAY_API_RATE_LIMIT_PER_ADDRESS": "100000/minute",
        "PAY_API_RATE_LIMIT_PER_PAYMENT": "1000/minute",
        # the cinema's page the payment page links back to
        "BILLING_PAYMENT_RETURN_URL": f"http://127.0.0.1:{port_base}/admin/login/?payment={{payment_id}}",
    }


def run_stack(command: list[str], env: dict[str, str]) -> None:
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), *command], env=env, check=True, cwd=ROOT)


@contextmanager
def own_stack(env: dict[str, str], **extra: str) -> Iterator[tuple[StackSettings, FaultProxy]]:
    """Start the proxy, then a fresh stack behind it; stop the stack at the end."""
    settings_env = {**env, **extra}
    proxy_port = int(settings_env["STRIPE_API_BASE"].rsplit(":", 1)[1])
    proxy = FaultProxy(upstream_port=int(settings_env["LOCALSTRIPE_PORT"]), port=proxy_port)
    proxy.start()
    Path(settings_env["PAY_API_FAILPOINTS_DIR"]).mkdir(parents=True, exist_ok=True)
    process_env = {**os.environ, **settings_env}
    run_stack(["down"], process_env)
    run_stack(["up", "--fresh"], process_env)
    try:
        yield StackSettings.load(settings_env), proxy
    finally:
        run_stack(["down"], process_env)
