"""Access-check benchmark: billing's access check against the server's own ceiling, in one run.

Against the running system (`make up`):

    make bench                   (or: .venv/bin/python bench/access_check.py)

1. Throughput (wrk, the same load for each, one after the other): a raw ASGI app answering a
   constant Access JSON under the same uvicorn flags as billing (the ceiling); the cached check (a
   paying user, a covered film); the cold check (every request a user never seen); the batch
   check (100 films a request). billing is started here as production runs it (the stack's
   settings, BILLING_WEB_WORKERS processes, metrics in multiprocess mode, BILLING_TEST_CLOCK=0:
   `make up`'s movable test clock reads Redis before every request). Targets: cached >= 0.5 of the ceiling's req/s with p99 <= 3x the
   ceiling's p99; cold >= 0.1 of the ceiling.
2. Propagation: two more billing processes (started here, single uvicorn worker each, as in 1.)
   are polled while a change commits through the stack's billing: an admin plan change
   (a film covered / no longer covered), a payment that succeeded, a refund. Latency = the first
   answer with the new decision - the change's commit (the plan and refund requests' start; the
   payment's `succeeded_at`, which billing sets just before its commit). Target: p99 <= 100 ms.
3. Memory: one more billing process with BILLING_ACCESS_CACHE_USERS=--cache-users is sent
   --memory-users distinct users twice over; its RSS is read before and after each pass.

Prints every figure with the command line that produced it; exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration_tests.clients import CARD_OK, BillingClient, PaymentPage, StackSettings  # noqa: E402
from integration_tests.clients.tokens import service_token  # noqa: E402
from integration_tests.scenario import COVERED_FILM_ID, DEMO_PLAN_ID, FREE_FILM_ID  # noqa: E402

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
BIN = Path(sys.executable).parent

COLD_LUA = """
local hex = "0123456789abcdef"
local function rhex(n)
  local t = {}
  for i = 1, n do local r = math.random(1, 16); t[i] = hex:sub(r, r) end
  return table.concat(t)
end
math.randomseed(os.time() + os.clock() * 1000000)
request = function()
  local user = rhex(8) .. "-" .. rhex(4) .. "-4" .. rhex(3) .. "-a" .. rhex(3) .. "-" .. rhex(12)
  return wrk.format("GET", "/internal/v1/access?user_id=" .. user .. "&film_id=%(film)s")
end
"""

BATCH_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%(body)s'
"""


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        wrk = shutil.which("wrk")
    assert wrk, "wrk is not installed"
    return wrk


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def paying_user(settings: StackSettings) -> tuple[str, str]:
    """A user who bought and paid the demo plan (allowed=true on the covered film); their payment."""
    user = BillingClient(settings)
    bought = user.buy(DEMO_PLAN_ID)
    bought.raise_for_status()
    payment = bought.json()["payment"]
    result = PaymentPage(settings, payment["payment_url"]).pay(CARD_OK)
    assert result.status == "succeeded", result.body
    assert user.wait_for_payment(payment["id"], {"succeeded"})["status"] == "succeeded"
    return user.user_id, payment["id"]


# --- throughput -------------------------------------------------------------------------------
def wrk_command(wrk: str, url: str, args, *, token: str | None, script: str | None, duration=None):
    command = [wrk, f"-t{args.threads}", f"-c{args.connections}"]
    command += [f"-d{duration or args.duration}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    if script:
        command += ["-s", script]
    return [*command, url]


def run_wrk(command: list[str]) -> dict[str, float]:
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        raise SystemExit(f"{command[-1]}: {non_2xx.group(1)} failed responses\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p99_value, p99_unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return {"rps": rps, "p99_ms": float(p99_value) * UNITS[p99_unit], "requests": requests}


def shown(command: list[str]) -> str:
    """The command line as printed (the token shortened; the script path kept)."""
    return " ".join(
        "'Authorization: Bearer <service token>'" if part.startswith("Authorization") else part
        for part in command
    )


def uvicorn(app: str, port: int, workers: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code < 500:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"{app} did not start:\n{log.read_text()}")
        time.sleep(0.1)
    raise SystemExit(f"{app} did not answer on port {port}")


def billing_env(settings: StackSettings, scratch: Path, name: str, **extra: str) -> dict[str, str]:
    """The stack's settings as production runs billing (no movable clock; shared metrics files)."""
    metrics = scratch / f"metrics-{name}"
    metrics.mkdir()
    return {
        **settings.env(),
        "BILLING_TEST_CLOCK": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        **extra,
    }


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    process.wait(timeout=20)


# --- propagation --------------------------------------------------------------------------------
class Watcher(threading.Thread):
    """Polls one billing process's answer for (user, film) until it shows `reason`."""

    def __init__(self, base_url: str, token: str, user: str, film: str, reason: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/internal/v1/access?user_id={user}&film_id={film}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.reason = reason
        self.seen_at: float | None = None
        self.started = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            deadline = time.time() + 30
            self.started.set()
            while time.time() < deadline:
                answer = client.get(self.url, headers=self.headers).json()
                if answer["reason"] == self.reason:
                    self.seen_at = time.time()
                    return


def watch(urls: list[str], token: str, user: str, film: str, reason: str) -> list[Watcher]:
    watchers = [Watcher(url, token, user, film, reason) for url in urls]
    for watcher in watchers:
        watcher.start()
        watcher.started.wait()
    return watchers


def latencies(watchers: list[Watcher], committed_at: float) -> list[float]:
    for watcher in watchers:
        watcher.join()
        assert watcher.seen_at is not None, f"{watcher.url} never answered {watcher.reason}"
    return [max(0.0, (w.seen_at - committed_at) * 1000) for w in watchers]


def plan_changes(settings, urls, token, rounds: int) -> list[float]:
    """The admin (through etl's call) covers a film, then no longer: free <-> no_subscription."""
    etl = httpx.Client(
        base_url=settings.billing_url,
        headers={"Authorization": f"Bearer {service_token(settings, 'etl', 'billing', 3600)}"},
    )
    plan_id, film, user = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    plan = {
        "name": "bench plan",
        "description": "made by bench/access_check.py",
        "price_amount": 100,
        "currency": "usd",
        "period_unit": "month",
        "period_count": 1,
        "refund_window_days": 0,
        "active": True,
        "all_films": False,
    }
    samples = []
    try:
        for n in range(rounds):
            covered = n % 2 == 0
            watchers = watch(urls, token, user, film, "no_subscription" if covered else "free")
            started = time.time()
            etl.put(f"/internal/v1/plans/{plan_id}", json={**plan, "film_ids": [film] * covered})
            samples += latencies(watchers, started)
    finally:
        etl.delete(f"/internal/v1/plans/{plan_id}")
    return samples


def payments_and_refunds(settings, urls, token, rounds: int) -> tuple[list[float], list[float]]:
    """A user pays the demo plan (no_subscription -> subscription), then refunds (and back)."""
    admin = httpx.Client(
        base_url=settings.billing_url,
        headers={"Authorization": f"Bearer {service_token(settings, 'admin', 'billing', 3600)}"},
    )
    paid, refunded = [], []
    for _ in range(rounds):
        user = BillingClient(settings)
        watchers = watch(urls, token, user.user_id, COVERED_FILM_ID, "subscription")
        bought = user.buy(DEMO_PLAN_ID).json()["payment"]
        assert PaymentPage(settings, bought["payment_url"]).pay(CARD_OK).status == "succeeded"
        view = {}
        for _ in range(300):
            view = admin.get(f"/internal/v1/payments/{bought['id']}").json()
            if view.get("succeeded_at"):
                break
            time.sleep(0.05)
        paid += latencies(watchers, datetime.fromisoformat(view["succeeded_at"]).timestamp())
        watchers = watch(urls, token, user.user_id, COVERED_FILM_ID, "no_subscription")
        started = time.time()
        assert user.refund(bought["id"]).status_code in (200, 201, 202)
        refunded += latencies(watchers, started)
    return paid, refunded


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (
        f"n={len(ordered)} p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, "
        f"max {ordered[-1]:.1f} ms"
    ), p99


# --- memory --------------------------------------------------------------------------------------
def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    return total / 1024


def worker_pids(process: subprocess.Popen) -> list[int]:
    """uvicorn's serving processes: the master's children (or the master with one worker)."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True
    ).stdout.split()
    return [int(pid) for pid in out] or [process.pid]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plan-rounds", type=int, default=20, help="plan changes to time")
    parser.add_argument("--payment-rounds", type=int, default=5, help="payments+refunds to time")
    parser.add_argument("--memory-users", type=int, default=100_000)
    parser.add_argument("--cache-users", type=int, default=50_000)
    args = parser.parse_args()

    settings = StackSettings.load()
    workers = int(settings.values.get("BILLING_WEB_WORKERS", "2"))
    wrk = ensure_wrk()
    token = service_token(settings, "movies", "billing", 3600)
    user_id, _ = paying_user(settings)
    load = os.getloadavg()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)"
    )
    print(f"billing and the ceiling: uvicorn --workers {workers} --no-access-log")

    scratch = Path(tempfile.mkdtemp(prefix="bench-access-"))
    cold_script = scratch / "cold.lua"
    cold_script.write_text(COLD_LUA % {"film": COVERED_FILM_ID})
    films = [COVERED_FILM_ID, FREE_FILM_ID, *(str(uuid.uuid4()) for _ in range(98))]
    batch_script = scratch / "batch.lua"
    batch_script.write_text(
        BATCH_LUA % {"body": json.dumps({"user_id": user_id, "film_ids": films})}
    )
    ceiling_port, billing_port = free_port(), free_port()
    ceiling = uvicorn(
        "bench.ceiling_app:app", ceiling_port, workers, dict(os.environ), scratch / "c"
    )
    billing_env_main = billing_env(settings, scratch, "billing")
    billing = uvicorn(
        "billing.main:app", billing_port, workers, billing_env_main, scratch / "billing.log"
    )
    billing_url = f"http://127.0.0.1:{billing_port}"
    access_url = f"{billing_url}/internal/v1/access?user_id={user_id}&film_id={COVERED_FILM_ID}"
    runs = {
        "ceiling": wrk_command(
            wrk, f"http://127.0.0.1:{ceiling_port}/", args, token=None, script=None
        ),
        "cached": wrk_command(wrk, access_url, args, token=token, script=None),
        "cold": wrk_command(wrk, f"{billing_url}/", args, token=token, script=str(cold_script)),
        "batch": wrk_command(
            wrk,
            f"{billing_url}/internal/v1/access/batch",
            args,
            token=token,
            script=str(batch_script),
        ),
    }
    try:
        run_wrk(runs["ceiling"][:3] + ["-d2s", *runs["ceiling"][4:]])  # warm-ups
        run_wrk(runs["cached"][:3] + ["-d2s", *runs["cached"][4:]])
        results = {name: run_wrk(command) for name, command in runs.items()}
    finally:
        stop(ceiling)
        stop(billing)

    extra = [free_port(), free_port()]
    processes = [
        uvicorn(
            "billing.main:app",
            port,
            1,
            billing_env(settings, scratch, str(port)),
            scratch / f"billing-{port}.log",
        )
        for port in extra
    ]
    urls = [f"http://127.0.0.1:{port}" for port in extra]
    try:
        plan = plan_changes(settings, urls, token, args.plan_rounds)
        paid, refunded = payments_and_refunds(settings, urls, token, args.payment_rounds)
    finally:
        for process in processes:
            stop(process)

    memory_port = free_port()
    memory_env = billing_env(
        settings, scratch, "memory", BILLING_ACCESS_CACHE_USERS=str(args.cache_users)
    )
    memory = uvicorn("billing.main:app", memory_port, 1, memory_env, scratch / "memory.log")
    try:
        pids = worker_pids(memory)
        memory_runs = []
        rss = [rss_mb(pids)]
        for _ in range(2):
            sent = 0
            while sent < args.memory_users:
                command = wrk_command(
                    wrk, f"http://127.0.0.1:{memory_port}/", args, token=token,
                    script=str(cold_script), duration=5,
                )  # fmt: skip
                sent += run_wrk(command)["requests"]
            memory_runs.append(sent)
            rss.append(rss_mb(pids))
        held = httpx.get(
            f"http://127.0.0.1:{memory_port}/internal/v1/access/cache",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    finally:
        stop(memory)

    ceiling_rps, ceiling_p99 = results["ceiling"]["rps"], results["ceiling"]["p99_ms"]
    print()
    for name, command in runs.items():
        r = results[name]
        print(f"{name:8} {r['rps']:9.0f} req/s  p99 {r['p99_ms']:6.1f} ms   {shown(command)}")
    cached_ratio = results["cached"]["rps"] / ceiling_rps
    cached_p99_ratio = results["cached"]["p99_ms"] / ceiling_p99
    cold_ratio = results["cold"]["rps"] / ceiling_rps
    batch_ratio = results["batch"]["rps"] / ceiling_rps
    print(
        f"cached / ceiling: {cached_ratio:.2f} req/s (target >= 0.50), "
        f"p99 {cached_p99_ratio:.2f}x (target <= 3)\n"
        f"cold / ceiling:   {cold_ratio:.2f} (target >= 0.10)\n"
        f"batch / ceiling:  {batch_ratio:.2f} requests, "
        f"{results['batch']['rps'] * len(films):.0f} decisions/s ({len(films)} films a request)"
    )
    plan_line, _ = summary(plan)
    paid_line, _ = summary(paid)
    refund_line, _ = summary(refunded)
    everything_line, everything_p99 = summary(plan + paid + refunded)
    print(
        f"\npropagation to 2 other billing processes (target p99 <= 100 ms):\n"
        f"  plan's films changed: {plan_line}\n"
        f"  payment succeeded:    {paid_line}\n"
        f"  refund:               {refund_line}\n"
        f"  all:                  {everything_line}\n"
        f"  expiry: no message needed (a period stops counting at its end, in every process)"
    )
    print(
        f"\nmemory (one process, BILLING_ACCESS_CACHE_USERS={args.cache_users}): RSS "
        f"{rss[0]:.0f} MB at start, {rss[1]:.0f} MB after {memory_runs[0]} distinct users, "
        f"{rss[2]:.0f} MB after {memory_runs[0] + memory_runs[1]}; users held {held['users']}"
    )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    shutil.rmtree(scratch, ignore_errors=True)
    met = (
        cached_ratio >= 0.5
        and cached_p99_ratio <= 3
        and cold_ratio >= 0.1
        and everything_p99 <= 100
        and held["users"] <= args.cache_users
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
