"""Renewal throughput: due subscriptions renewed through pay_api, at two sizes in one run, and the
Stripe rate cap.

    make bench-renewals          (or: .venv/bin/python bench/renewals.py [--sizes 10000,100000])

Self-contained: a stack of its own (`scripts/stack.sh start` with its own ports, databases, data
folder and Redis prefix; nothing else of the system is touched), run as production runs it —
billing's API, two copies of billing's worker, pay_api under gunicorn and two copies of its
outbox worker — with pay_api speaking to `bench/fake_stripe.py`, a Stripe stand-in that answers in
constant time (localstripe slows as it grows), through its Stripe API base (`STRIPE_API_BASE`,
`STRIPE_LOCALSTRIPE=0`: pay_api talks to it as to Stripe). Emails go to a sink that keeps nothing.

For each size: fresh databases, migrated; the subscriptions bulk-inserted straight into billing's
database (one `INSERT … generate_series`: active, auto-renewing, a first payment paid, the period
ending 30 days from now) and their saved cards into pay_api's (`customers`); the stack started;
then billing's test clock moved 30 days less 12 hours forward (BILLING_RENEWAL_LEAD_SECONDS is a
day here, so every subscription is due at once and none reaches its period's end during the run),
and the database polled until every subscription is renewed. Reported:

* renewals/s, from the first renewal payment written to the last subscription renewed (and from
  the clock's move, which adds up to one worker interval of idleness);
* CPU per renewal (ms) of billing's workers and pay_api (utime+stime from /proc, every process of
  each), and of billing's API, pay_api's outbox workers and the PostgreSQL backends serving the
  two databases; the fake Stripe's CPU is not ours;
* the ratio of the two sizes (goal: the larger within 20% of the smaller, and >= 500/s);
* correctness: every subscription renewed exactly once (one renewal payment each, succeeded, the
  period moved by one month, one ledger charge), and the fake Stripe saw exactly one PaymentIntent
  and one charge per renewal payment.

The cap: a smaller set (--cap-size) renewed with BILLING_RENEWAL_MAX_PER_SECOND at each of --caps
(100, Stripe's live limit; 30, below what the stack reaches uncapped, so the cap binds); the most
Stripe requests the fake Stripe received in any 1-second window (sliding, and per wall-clock
second) must not exceed the cap. Order: the smallest size, the caps, the larger sizes; each run's
figures are printed as it ends, progress every minute, and --deadline-minutes stops waiting (the
run then reports what it renewed, marked partial, and checks only that nothing was charged twice).

The load average is printed before and after (other work on the machine squeezes every figure).
Exits non-zero when a correctness check fails or the cap is exceeded; the throughput goals are
reported, not asserted (performance lives here, never in the tests).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
STACK = str(ROOT / "scripts" / "stack.sh")
TICKS = os.sysconf("SC_CLK_TCK")
SECRET = "bench-service-secret-" + secrets.token_hex(16)
MONTH_DAYS = 30
ADVANCE_SECONDS = MONTH_DAYS * 86400 - 12 * 3600


# Billing: one plan; N active subscriptions whose month ends in 30 days, each with its first
# payment (succeeded); pay_api: each user's Stripe Customer and saved card.
SEED_BILLING = """
INSERT INTO plans (id, name, description, price_amount, currency, period_unit, period_count,
                   refund_window_days, active, all_films)
VALUES (%(plan)s, 'Bench monthly', '', 999, 'usd', 'month', 1, 14, true, true);
INSERT INTO subscriptions (id, user_id, plan_id, status, period_unit, period_count,
                           refund_window_days, current_period_start, current_period_end,
                           auto_renew, needs_attention, created_at, updated_at)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       ('10000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       %(plan)s, 'active', 'month', 1, 14, %(end)s - interval '1 month', %(end)s,
       true, false, now(), now()
FROM generate_series(1, %(n)s) AS u;
INSERT INTO payments (id, user_id, subscription_id, plan_id, kind, status, amount, currency,
                      refunded_amount, description, stripe_payment_intent_id, expires_at,
                      next_check_at, check_attempts, succeeded_at, period_start, period_end,
                      created_at, updated_at)
SELECT ('20000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       ('10000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       %(plan)s, 'first', 'succeeded', 999, 'usd', 0, 'Bench monthly', 'pi_seed_' || u,
       %(end)s - interval '1 month', %(end)s, 0, %(end)s - interval '1 month',
       %(end)s - interval '1 month', %(end)s, %(end)s - interval '1 month', now()
FROM generate_series(1, %(n)s) AS u;
ANALYZE;
"""
SEED_PAY_API = """
INSERT INTO customers (user_id, stripe_customer_id, default_payment_method_id, created_at,
                       updated_at)
SELECT ('10000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid, 'cus_bench_' || u,
       'pm_bench_' || u, now(), now()
FROM generate_series(1, %(n)s) AS u;
ANALYZE;
"""

UNDELIVERED = "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
# Polled while the run goes, with as little of PostgreSQL's CPU (taken from the system measured)
# as can be: every POLL_SECONDS, the subscriptions still to renew counted through the index of
# paid periods by their end (`ix_subscriptions_period_end_paid`; a count of the renewed ones read
# every subscription: 20 ms at 100k), and whether a renewal was written yet only until one is. A
# subscription that left the paid statuses counts as done here; the checks after the run find it.
POLL_SECONDS = 0.5
FIRST_WRITTEN = "SELECT EXISTS (SELECT FROM payments WHERE kind = 'renewal')"
TO_RENEW = """
SELECT count(*) FROM subscriptions
WHERE status IN ('active', 'past_due', 'canceled') AND current_period_end <= %(end)s
"""
CHECKS = {
    "subscriptions renewed once (active, period moved by exactly one month)": """
        SELECT count(*) FROM subscriptions
        WHERE status = 'active' AND current_period_end = %(end)s + interval '1 month'
          AND current_period_start = %(end)s""",
    "renewal payments (one per subscription and period start: uq_payments_renewal_period)": """
        SELECT count(*) FROM payments WHERE kind = 'renewal'""",
    "renewal payments succeeded for that period": """
        SELECT count(*) FROM payments WHERE kind = 'renewal' AND status = 'succeeded'
          AND period_start = %(end)s AND period_end = %(end)s + interval '1 month'
          AND stripe_payment_intent_id IS NOT NULL""",
    "ledger charges of renewals": """
        SELECT count(*) FROM ledger_entries l JOIN payments p ON p.id = l.payment_id
        WHERE p.kind = 'renewal' AND l.kind = 'charge'""",
    "renewal receipts queued (email outbox)": """
        SELECT count(*) FROM outbox WHERE topic = 'email'""",
    "renewals whose success event from pay_api reached billing (inbox)": """
        SELECT count(DISTINCT e.payment_id) FROM processed_events e
        JOIN payments p ON p.id = e.payment_id
        WHERE p.kind = 'renewal' AND e.status = 'succeeded'""",
}


class Vacuum(threading.Thread):
    """Autovacuum's work, done by hand when the server runs with `autovacuum = off` (this
    machine's PostgreSQL does; production runs it on): `VACUUM (ANALYZE)` of both databases every
    `every` seconds during a run, over connections that stay open, so that its CPU counts in the
    PostgreSQL column. Without it, every renewal leaves dead rows (payments, subscriptions, the
    outboxes) that no one removes, and the partial indexes the workers scan fill with them: the
    rate falls the longer a run lasts (bench/README.md)."""

    def __init__(self, urls: list[str], every: float) -> None:
        super().__init__(name="vacuum", daemon=True)
        self.connections = [psycopg.connect(url, autocommit=True) for url in urls]
        self.every = every
        self.stopped = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            for conn in self.connections:
                conn.execute("VACUUM (ANALYZE)")
            self.rounds += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        for conn in self.connections:
            conn.close()


@dataclass
class Run:
    size: int
    cap: int = 0
    renewed: int = 0  # the size, unless the run was stopped at --deadline-minutes (partial)
    partial: bool = False
    progress: list[tuple[float, int]] = field(default_factory=list)  # (s from first, renewed)
    seconds_from_first: float = 0.0
    seconds_from_clock: float = 0.0
    drain_seconds: float = 0.0  # after the last renewal, until pay_api's outbox was empty
    cpu: dict[str, float] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)
    stripe: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.renewed / self.seconds_from_first

    def ms_per_renewal(self, *groups: str) -> float:
        return 1000 * sum(self.cpu.get(g, 0.0) for g in groups) / max(1, self.renewed)

    def thirds(self) -> tuple[float, float]:
        """Renewals/s over the first and the last third of the run (flat within a run?)."""
        if len(self.progress) < 4:
            return self.rate, self.rate
        total = self.progress[-1][0]

        def rate_between(start: float, stop: float) -> float:
            inside = [(t, n) for t, n in self.progress if start <= t <= stop]
            (t0, n0), (t1, n1) = inside[0], inside[-1]
            return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

        return rate_between(0, total / 3), rate_between(2 * total / 3, total)


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        base = args.port_base
        self.fake_port, self.sink_port = base + 430, base + 27
        self.env = {
            **os.environ,
            "ADMIN_PORT": str(base),
            "BILLING_PORT": str(base + 1),
            "PAY_API_PORT": str(base + 2),
            "MAIL_PORT": str(base + 25),
            "MAIL_SMTP_PORT": str(self.sink_port),
            "LOCALSTRIPE_PORT": str(base + 420),
            "DB_PREFIX": args.name,
            "REDIS_DB": str(args.redis_db),
            "BILLING_REDIS_PREFIX": f"{args.name}:",
            "PAY_API_RATE_LIMIT_PREFIX": f"{args.name}_pay_api",
            "DATA_DIR": str(ROOT / "var" / args.name),
            "SERVICE_JWT_SECRET": SECRET,
            # pay_api talks to the fake as to Stripe (off_session and all), never to localstripe
            "STRIPE_OFFLINE": "0",
            "STRIPE_API_BASE": f"http://127.0.0.1:{self.fake_port}",
            "STRIPE_LOCALSTRIPE": "0",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
            "STRIPE_REGISTER_WEBHOOK": "0",
            "WORKER_COPIES": str(args.workers),
            "BILLING_COPIES": "1",
            "PAY_API_COPIES": "1",
            # every seeded subscription is due at once after the clock's move (see the docstring)
            "BILLING_RENEWAL_LEAD_SECONDS": "86400",
            "BILLING_RENEWAL_MAX_PER_SECOND": "0",
            # The events of renewals answered in a batch wait 30 s in production; 5 s here, and
            # every run waits for pay_api's outbox to be empty before it reads the CPU, so their
            # delivery counts in it (and a run is not 30 s of idle polling longer).
            "PAY_API_OUTBOX_ANSWERED_DELAY": "5",
        }
        self.settings = self.stack_env()
        server = (
            f"{self.settings['POSTGRES_USER']}@{self.settings['POSTGRES_HOST']}:"
            f"{self.settings['POSTGRES_PORT']}"
        )
        self.server = f"postgresql://{server}"
        self.billing_db, self.pay_api_db = f"{args.name}_billing", f"{args.name}_pay_api"
        self.redis = redis.Redis.from_url(self.settings["REDIS_URL"])
        self.helpers: list[subprocess.Popen] = []
        self.deadline: float | None = None  # time.monotonic() after which a run stops waiting

    # --- the stack -----------------------------------------------------------------------------
    def stack(self, *command: str, env: dict | None = None) -> str:
        return subprocess.run(
            [STACK, *command], env=env or self.env, cwd=ROOT, check=True, capture_output=True,
            text=True,
        ).stdout  # fmt: skip

    def stack_env(self) -> dict[str, str]:
        out = self.stack("env")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def fresh_databases(self) -> None:
        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            for db in (self.billing_db, self.pay_api_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                conn.execute(f"CREATE DATABASE \"{db}\" TEMPLATE template0 ENCODING 'UTF8'")
        env = {**self.env, **self.settings}
        for service in ("billing", "pay_api"):
            subprocess.run(
                [str(Path(sys.executable).parent / "alembic"), "-c", f"{service}/alembic.ini",
                 "upgrade", "head"],
                cwd=ROOT, env=env, check=True, capture_output=True,
            )  # fmt: skip
        for key in self.redis.scan_iter(match=f"{self.args.name}:*", count=1000):
            self.redis.delete(key)

    def start_helpers(self) -> None:
        log_dir = ROOT / "var" / self.args.name / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        fake = [
            sys.executable,
            str(ROOT / "bench" / "fake_stripe.py"),
            "--port",
            str(self.fake_port),
        ]
        sink = [sys.executable, str(ROOT / "bench" / "smtp_sink.py"), str(self.sink_port)]
        for name, command in (("fake_stripe", fake), ("smtp_sink", sink)):
            log = (log_dir / f"{name}.log").open("wb")
            self.helpers.append(
                subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.fake_port}/_bench/stats", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the fake Stripe did not start") from None
                time.sleep(0.2)

    def stop_helpers(self) -> None:
        for process in self.helpers:
            process.terminate()
            process.wait(10)
        self.helpers = []

    def pids(self) -> dict[str, list[int]]:
        """Every process of each group (a web server's master and its workers)."""
        roots: dict[str, list[int]] = {}
        for line in self.stack("status").splitlines():
            name, _, rest = line.partition(": running (pid ")
            if rest:
                group = name.rsplit("-", 1)[0]  # billing-worker-2 -> billing-worker
                roots.setdefault(group, []).append(int(rest.rstrip(")")))
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        groups: dict[str, list[int]] = {}
        for group, pids in roots.items():
            todo, seen = list(pids), []
            while todo:
                pid = todo.pop()
                seen.append(pid)
                todo.extend(children.get(pid, []))
            groups[group] = seen
        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            groups["postgres"] = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s)",
                    ([self.billing_db, self.pay_api_db],),
                )
            ]
        groups["fake_stripe"] = [self.helpers[0].pid]
        return groups

    def cpu(self) -> dict[tuple[str, int], float]:
        """CPU seconds (user + system) of every process of every group, by (group, pid)."""
        seconds: dict[tuple[str, int], float] = {}
        for group, pids in self.pids().items():
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                seconds[(group, pid)] = (int(fields[11]) + int(fields[12])) / TICKS
        return seconds

    def sql(self, db: str, statement: str, params: dict | None = None) -> list[tuple]:
        with psycopg.connect(f"{self.server}/{db}", autocommit=True) as conn:
            cursor = conn.execute(statement, params or {})
            return cursor.fetchall() if cursor.description else []

    def fake_stats(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.fake_port}/_bench/stats", timeout=30).json()

    def service_token(self) -> str:
        now = int(time.time())
        claims = {"iss": "bench", "sub": "bench", "aud": "billing", "iat": now, "exp": now + 600}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    # --- one run -------------------------------------------------------------------------------
    def run(self, size: int, cap: int = 0) -> Run:
        result = Run(size=size, cap=cap)
        env = {**self.env, "BILLING_RENEWAL_MAX_PER_SECOND": str(cap)}
        self.fresh_databases()
        self.start_helpers()
        try:
            end = self.seed(size)
            self.stack("start", "billing", "pay_api", "pay_api-worker", "billing-worker", env=env)
            time.sleep(3)  # the workers' first passes (nothing is due yet)
            vacuum = None
            if self.sql(self.billing_db, "SHOW autovacuum")[0][0] == "off":
                vacuum = Vacuum(
                    [f"{self.server}/{self.billing_db}", f"{self.server}/{self.pay_api_db}"],
                    every=60,
                )
                vacuum.start()
            before = self.cpu()
            started = time.monotonic()
            answer = httpx.post(
                f"http://127.0.0.1:{self.args.port_base + 1}/internal/v1/clock/advance",
                json={"seconds": ADVANCE_SECONDS},
                headers={"Authorization": f"Bearer {self.service_token()}"},
                timeout=30,
            )
            answer.raise_for_status()
            first = None
            last_progress, last_renewed, last_print = time.monotonic(), -1, time.monotonic()
            while True:
                if first is None and self.sql(self.billing_db, FIRST_WRITTEN)[0][0]:
                    first = time.monotonic()
                renewed = (
                    size - self.sql(self.billing_db, TO_RENEW, {"end": end})[0][0] if first else 0
                )
                now = time.monotonic()
                if first is not None:
                    result.progress.append((now - first, renewed))
                if renewed != last_renewed:
                    last_progress, last_renewed = now, renewed
                if renewed >= size:
                    break
                if now - last_progress > self.args.stall_seconds:
                    result.failures.append(f"stalled at {renewed}/{size} renewed")
                    break
                if self.deadline is not None and now > self.deadline:
                    result.partial = True
                    break
                if now - last_print >= 60 and first is not None:
                    last_print = now
                    print(
                        f"  {now - first:6.0f} s: {renewed:,} renewed "
                        f"({renewed / (now - first):.1f}/s so far)",
                        flush=True,
                    )
                time.sleep(POLL_SECONDS if first else 0.05)
            result.renewed = renewed
            done = time.monotonic()
            # pay_api's events of these renewals, delivered to billing (they are deferred: see
            # PAY_API_OUTBOX_ANSWERED_DELAY above) before the CPU is read.
            drained_by = done + 60
            while self.sql(self.pay_api_db, UNDELIVERED)[0][0] and time.monotonic() < drained_by:
                time.sleep(0.25)
            result.drain_seconds = time.monotonic() - done
            after = self.cpu()
            if vacuum is not None:
                vacuum.stop()
                print(
                    f"  autovacuum is off on this server: VACUUM (ANALYZE) of both databases "
                    f"every {vacuum.every:.0f} s instead ({vacuum.rounds} rounds)",
                    flush=True,
                )
            self.stack("stop", "billing-worker", env=env)
            result.seconds_from_first = done - (first or started)
            result.seconds_from_clock = done - started
            for (group, pid), seconds in after.items():
                result.cpu[group] = (
                    result.cpu.get(group, 0.0) + seconds - before.get((group, pid), 0)
                )
            time.sleep(1)  # pay_api's last outbox deliveries
            result.stripe = self.fake_stats()
            self.verify(result, end)
            print_run(result)
        finally:
            self.stack("down", env=env)
            self.stop_helpers()
        return result

    def seed(self, size: int) -> object:
        """The subscriptions and saved cards; the seeded periods' end (30 days from now)."""
        started = time.monotonic()
        end = self.sql(self.billing_db, "SELECT date_trunc('second', now()) + interval '30 days'")
        end = end[0][0]
        with psycopg.connect(f"{self.server}/{self.billing_db}", autocommit=True) as conn:
            for statement in SEED_BILLING.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"plan": "30000000-0000-4000-8000-000000000001",
                                             "n": size, "end": end})  # fmt: skip
        with psycopg.connect(f"{self.server}/{self.pay_api_db}", autocommit=True) as conn:
            for statement in SEED_PAY_API.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"n": size})
        print(f"  seeded {size:,} due subscriptions in {time.monotonic() - started:.1f} s")
        return end

    def verify(self, result: Run, end) -> None:
        if result.partial:  # stopped early: only "never twice" can be checked
            for label in ("payments_charged_twice", "payments_with_two_intents"):
                if result.stripe[label] != 0:
                    result.failures.append(f"fake Stripe {label}: {result.stripe[label]}")
            return
        size = result.size
        for label, statement in CHECKS.items():
            count = self.sql(self.billing_db, statement, {"end": end})[0][0]
            result.checks[label] = count
            if count != size:
                result.failures.append(f"{label}: {count} (expected {size})")
        intents = self.sql(
            self.pay_api_db,
            "SELECT count(*), count(DISTINCT stripe_payment_intent_id) FROM payments "
            "WHERE status = 'succeeded'",
        )[0]
        result.checks["pay_api payments succeeded (distinct intents)"] = intents[1]
        if tuple(intents) != (size, size):
            result.failures.append(f"pay_api succeeded payments / distinct intents: {intents}")
        stripe = result.stripe
        for label, expected in (
            ("intents", size),
            ("charges", size),
            ("payments_charged", size),
            ("payments_charged_twice", 0),
            ("payments_with_two_intents", 0),
        ):
            if stripe[label] != expected:
                result.failures.append(
                    f"fake Stripe {label}: {stripe[label]} (expected {expected})"
                )


def window_max(stats: dict) -> tuple[int, int, float]:
    """(most requests in a wall-clock second, most in any sliding 1 s window, mean per second
    over the seconds that saw requests) — from the fake Stripe's own times."""
    per_second = {int(k): v for k, v in stats["per_second"].items()}
    times = sorted(stats.get("times", []))
    sliding, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] >= 1.0:
            left += 1
        sliding = max(sliding, right - left + 1)
    busy = range(min(per_second), max(per_second) + 1) if per_second else range(0)
    mean = sum(per_second.values()) / len(busy) if per_second else 0.0
    return max(per_second.values(), default=0), sliding, mean


def row(run: Run) -> str:
    first, last = run.thirds()
    return (
        f"| {run.renewed:,}{' (stopped: partial)' if run.partial else ''} of {run.size:,} due"
        f"{f', cap {run.cap}' if run.cap else ''} | {run.rate:,.1f} ({run.seconds_from_first:.0f} s)"
        f" | {first:,.1f} / {last:,.1f} | "
        f"{run.renewed / run.seconds_from_clock:,.1f} | "
        f"{run.ms_per_renewal('billing-worker', 'pay_api'):.1f} "
        f"({run.ms_per_renewal('billing-worker'):.1f} + {run.ms_per_renewal('pay_api'):.1f}) | "
        f"{run.ms_per_renewal('billing'):.1f} | {run.ms_per_renewal('pay_api-worker'):.1f} | "
        f"{run.ms_per_renewal('postgres'):.1f} | {run.ms_per_renewal('fake_stripe'):.1f} |"
    )


HEADER = (
    "| renewed | renewals/s (from the first written) | first / last third of the run | "
    "renewals/s from the clock's move | CPU ms per renewal: billing workers + pay_api | "
    "billing API | pay_api outbox workers | PostgreSQL | fake Stripe |"
)


def print_run(run: Run) -> None:
    stripe = run.stripe
    print(HEADER)
    print("|" + "---|" * (HEADER.count(" | ") + 1))
    print(row(run))
    for label, count in run.checks.items():
        print(f"  {label}: {count:,}")
    print(
        f"  pay_api's outbox empty {run.drain_seconds:.1f} s after the last renewal (its deferred "
        f"events delivered; the CPU columns include them)"
    )
    print(
        f"  fake Stripe: {stripe['requests']:,} requests, {stripe['intents']:,} intents, "
        f"{stripe['charges']:,} charges; payments charged {stripe['payments_charged']:,}, "
        f"twice {stripe['payments_charged_twice']}, with two intents "
        f"{stripe['payments_with_two_intents']}"
    )
    if run.cap:
        per_second, sliding, mean = window_max(stripe)
        print(
            f"  cap {run.cap}: Stripe requests, most in one wall-clock second {per_second}, in any"
            f" sliding 1 s window {sliding}; mean {mean:.1f}/s"
        )
    for failure in run.failures:
        print(f"  FAILED: {failure}")
    print(flush=True)


def report(runs: list[Run], caps: list[Run], command: str, load_before, load_after) -> bool:
    ok = True
    print(f"command: {command}")
    print(
        f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
        f"({os.cpu_count()} cores)"
    )
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count(" | ") + 1))
    for run in [*runs, *caps]:
        print(row(run))
        ok = ok and not run.failures
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        ratio = large.rate / small.rate
        cost = large.ms_per_renewal("billing-worker", "pay_api") / small.ms_per_renewal(
            "billing-worker", "pay_api"
        )
        print()
        print(
            f"ratio {large.size:,}/{small.size:,} due: renewals/s {ratio:.2f} (goal >= 0.80: "
            f"{'met' if ratio >= 0.8 else 'NOT met'}), CPU per renewal {cost:.2f}; >= 500 "
            f"renewals/s: {'met' if min(r.rate for r in runs) >= 500 else 'NOT met'}"
        )
    for run in caps:
        per_second, sliding, mean = window_max(run.stripe)
        held = sliding <= run.cap and per_second <= run.cap
        print(
            f"cap BILLING_RENEWAL_MAX_PER_SECOND={run.cap}: Stripe requests, most in one "
            f"wall-clock second {per_second}, most in any sliding 1 s window {sliding}, mean "
            f"{mean:.1f}/s over {run.seconds_from_first:.0f} s ({run.rate:.1f} renewals/s, "
            f"{2 * run.rate:.0f} requests/s): {'held' if held else 'EXCEEDED'}"
        )
        ok = ok and held
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="due subscriptions, each a run")
    parser.add_argument(
        "--caps", default="100,30", help="BILLING_RENEWAL_MAX_PER_SECOND of each cap run"
    )
    parser.add_argument("--cap-size", type=int, default=2000, help="0: no cap run")
    parser.add_argument(
        "--deadline-minutes", type=float, help="stop waiting then (the run reports partial)"
    )
    parser.add_argument("--workers", type=int, default=2, help="copies of each worker")
    parser.add_argument("--port-base", type=int, default=27000)
    parser.add_argument("--name", default="bench_renewals", help="DB prefix and data folder")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--stall-seconds", type=float, default=60)
    args = parser.parse_args()
    command = shlex.join([".venv/bin/python", "bench/renewals.py", *sys.argv[1:]])
    print(command)
    bench = Bench(args)
    if args.deadline_minutes:
        bench.deadline = time.monotonic() + 60 * args.deadline_minutes
    subprocess.run([STACK, "datastores"], env=bench.env, cwd=ROOT, check=True)
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    caps = [int(c) for c in args.caps.split(",") if c.strip()] if args.cap_size else []
    runs, cap_runs = [], []
    # the smallest size, the caps, then the larger sizes (the long runs last)
    for size in sizes[:1]:
        print(f"{size:,} due subscriptions:", flush=True)
        runs.append(bench.run(size))
    for cap in caps:
        print(f"{args.cap_size:,} due subscriptions, BILLING_RENEWAL_MAX_PER_SECOND={cap}:")
        cap_runs.append(bench.run(args.cap_size, cap=cap))
    for size in sizes[1:]:
        print(f"{size:,} due subscriptions:", flush=True)
        runs.append(bench.run(size))
    load_after = os.getloadavg()
    print()
    ok = report(runs, cap_runs, command, load_before, load_after)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
