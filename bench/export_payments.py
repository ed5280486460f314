"""Exporting payments as CSV through the admin: time, and the admin process's peak memory.

    .venv/bin/python bench/export_payments.py [--rows 100000] [--redis-db 14]

Self-contained (no `make up` needed): it makes two throw-away databases on the stack's
PostgreSQL (billing's, migrated with alembic and filled with `--rows` succeeded payments by one
INSERT … generate_series; the admin's, migrated, with one superuser), starts billing (uvicorn)
and the admin (gunicorn, one sync worker, as in production) on free local ports, logs in as the
manager and downloads /admin/reports/export/payments.csv, first a tenth of the rows (a date
range), then all of them. For each it prints the time, the rows received, and the admin
worker's peak resident memory (VmHWM) before and after. Streaming means the admin's peak does
not grow with the export's size: the ratio of the two exports' peaks is the figure to watch.
It also times the same export straight from billing, to show what the admin adds, and billing's
dashboard figures over those payments (30 days by day, a year by month).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import jwt
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from stack_env import postgres_server_url, redis_server_url  # noqa: E402

BIN = Path(sys.executable).parent
SECRET = "bench-service-secret-" + secrets.token_hex(16)

FILL = """
INSERT INTO plans (id, name, description, price_amount, currency, period_unit, period_count,
                   refund_window_days, active, all_films)
VALUES (%(plan)s, 'Bench monthly', '', 999, 'usd', 'month', 1, 14, true, true);
INSERT INTO subscriptions (id, user_id, plan_id, status, period_unit, period_count,
                           refund_window_days, auto_renew, needs_attention, created_at, updated_at)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       ('10000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       %(plan)s, 'expired', 'month', 1, 14, false, false, now(), now()
FROM generate_series(1, 1000) AS u;
INSERT INTO payments (id, user_id, subscription_id, plan_id, kind, status, amount, currency,
                      refunded_amount, description, stripe_payment_intent_id, expires_at,
                      next_check_at, check_attempts, succeeded_at, period_start, period_end,
                      created_at, updated_at)
SELECT gen_random_uuid(),
       ('10000000-0000-4000-8000-' || lpad(to_hex(1 + i %% 1000), 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad(to_hex(1 + i %% 1000), 12, '0'))::uuid,
       %(plan)s, CASE WHEN i < 1000 THEN 'first' ELSE 'renewal' END, 'succeeded', 999, 'usd', 0,
       '', 'pi_bench_' || i, ts, ts, 0, ts, ts, ts + interval '1 month', ts, ts
FROM (SELECT i, timestamptz '2025-01-01' + i * interval '5 minutes' AS ts
      FROM generate_series(0, %(rows)s - 1) AS i) AS numbered;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited ({process.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def peak_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))


def gunicorn_worker(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise SystemExit(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def download(client: httpx.Client, url: str, params: dict) -> tuple[float, int, int]:
    """(seconds, rows, bytes) of one streamed download, read and dropped chunk by chunk."""
    started = time.monotonic()
    size = lines = 0
    with client.stream("GET", url, params=params) as response:
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code} {response.read()[:300]!r}")
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return time.monotonic() - started, lines - 1, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--redis-db", type=int, default=14)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    server = postgres_server_url()
    billing_db, admin_db = f"bench_export_billing_{run}", f"bench_export_admin_{run}"
    billing_port, admin_port = free_port(), free_port()
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": f"{postgres_server_url('postgresql+asyncpg')}/{billing_db}",
        "REDIS_URL": redis_server_url(args.redis_db),
        "BILLING_REDIS_PREFIX": f"bench_export_{run}:",
        "SERVICE_JWT_SECRET": SECRET,
        "AUTH_JWT_SECRET": "bench-user-secret-" + secrets.token_hex(16),
        "ADMIN_DATABASE_URL": f"{server}/{admin_db}",
        "BILLING_URL": f"http://127.0.0.1:{billing_port}",
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "0",
        "ADMIN_PASSWORD": "bench-" + secrets.token_hex(8),
    }
    processes: list[subprocess.Popen] = []
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{billing_db}"')
        conn.execute(f'CREATE DATABASE "{admin_db}"')
    try:
        run_step = lambda *cmd: subprocess.run(cmd, cwd=ROOT, env=env, check=True,  # noqa: E731
                                               stdout=subprocess.DEVNULL)  # fmt: skip
        run_step(str(BIN / "alembic"), "-c", "billing/alembic.ini", "upgrade", "head")
        filled = time.monotonic()
        with psycopg.connect(f"{server}/{billing_db}", autocommit=True) as conn:
            params = {"plan": uuid.uuid4(), "rows": args.rows}
            for statement in FILL.split(";\n"):
                if statement.strip():
                    conn.execute(statement, params)
        print(f"filled billing with {args.rows} payments in {time.monotonic() - filled:.1f} s")
        run_step(sys.executable, "admin/manage.py", "migrate", "-v", "0")
        run_step(sys.executable, "admin/manage.py", "ensure_superuser", "--username", "bench")

        billing = subprocess.Popen(
            [str(BIN / "uvicorn"), "billing.main:app", "--host", "127.0.0.1",
             "--port", str(billing_port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,  # its JSON request log
        )  # fmt: skip
        processes.append(billing)
        admin = subprocess.Popen(
            [str(BIN / "gunicorn"), "config.wsgi", "--chdir", "admin", "--bind",
             f"127.0.0.1:{admin_port}", "--workers", "1", "--timeout", "300",
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(admin)
        wait_for(f"http://127.0.0.1:{billing_port}/health", billing)
        wait_for(f"http://127.0.0.1:{admin_port}/health", admin)
        worker = gunicorn_worker(admin.pid)

        base = f"http://127.0.0.1:{admin_port}"
        client = httpx.Client(base_url=base, timeout=300)
        login = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        client.post(
            "/admin/login/?next=/admin/",
            data={"username": "bench", "password": env["ADMIN_PASSWORD"],
                  "csrfmiddlewaretoken": token, "next": "/admin/"},
        )  # fmt: skip
        home = client.get("/admin/")  # warm-up: the dashboard (billing's summary) and imports
        if 'id="dashboard"' not in home.text:
            raise SystemExit("not logged in as a manager who sees the dashboard")
        baseline = peak_kib(worker)

        # Payments are 5 minutes apart from 2025-01-01: 288 a day; a tenth of them is these days.
        days = max(1, args.rows // 10 // 288)
        tenth = {"payments-date_from": "2025-01-01",
                 "payments-date_to": str(date(2025, 1, 1) + timedelta(days=days - 1))}  # fmt: skip
        results = []
        for label, params in (("a tenth", tenth), ("all", {})):
            seconds, rows, size = download(client, "/admin/reports/export/payments.csv", params)
            results.append((label, seconds, rows, size, peak_kib(worker)))

        now = int(time.time())
        service = jwt.encode(
            {"iss": "admin", "sub": "admin", "aud": "billing", "iat": now, "exp": now + 600},
            SECRET,
            algorithm="HS256",
        )
        direct = httpx.Client(
            base_url=f"http://127.0.0.1:{billing_port}",
            headers={"Authorization": f"Bearer {service}"},
            timeout=300,
        )
        billing_seconds, billing_rows, _ = download(direct, "/internal/v1/reports/payments.csv", {})
        last_day = str(date(2025, 1, 1) + timedelta(days=args.rows // 288))
        summaries = []
        for granularity, since in (("day", timedelta(days=29)), ("month", timedelta(days=364))):
            params = {"granularity": granularity, "date_to": last_day,
                      "date_from": str(date.fromisoformat(last_day) - since)}  # fmt: skip
            started = time.monotonic()
            answer = direct.get("/internal/v1/reports/summary", params=params)
            answer.raise_for_status()
            summaries.append(
                (granularity, len(answer.json()["series"]), time.monotonic() - started)
            )

        print(f"admin worker peak RSS after login and the dashboard: {baseline / 1024:.1f} MiB")
        for label, seconds, rows, size, peak in results:
            print(
                f"admin export, {label}: {rows} rows, {size / 1e6:.1f} MB in {seconds:.2f} s "
                f"({rows / seconds:,.0f} rows/s); admin worker peak RSS {peak / 1024:.1f} MiB "
                f"(+{(peak - baseline) / 1024:.1f} MiB over the baseline)"
            )
        (_, small_s, small_rows, _, small_peak), (_, all_s, all_rows, _, all_peak) = results
        print(f"billing alone, all: {billing_rows} rows in {billing_seconds:.2f} s")
        for granularity, periods, seconds in summaries:
            print(
                f"dashboard figures over {args.rows} payments, by {granularity} ({periods} "
                f"periods): {seconds * 1000:.0f} ms"
            )
        print(
            f"ratios: admin peak RSS all/tenth = {all_peak / small_peak:.2f} "
            f"for {all_rows / max(small_rows, 1):.1f}× the rows; "
            f"admin time / billing time (all) = {all_s / billing_seconds:.2f}"
        )
        if all_rows != args.rows:
            print(f"expected {args.rows} rows, got {all_rows}")
            return 1
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{billing_db}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "{admin_db}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
