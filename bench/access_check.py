"""Access-check benchmark: the movie service's access endpoint against billing's /health.

Both endpoints get the same load (wrk: same threads, connections, duration) in one run, against the
running system (`make up`). The access check is measured for a user who holds a paid plan, asking
about a covered film, with a service token, as the movie service does on every play.

    make bench                   (or: .venv/bin/python bench/access_check.py --duration 10)

Prints both throughputs, p99 latencies and their ratio; target: access ≥ 70% of health's throughput.
wrk comes from Debian's packages (`apt-get install wrk`); the script installs it when missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_tests.clients import CARD_OK, BillingClient, PaymentPage, StackSettings  # noqa: E402
from integration_tests.clients.tokens import service_token  # noqa: E402
from integration_tests.scenario import COVERED_FILM_ID, DEMO_PLAN_ID  # noqa: E402

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        wrk = shutil.which("wrk")
    assert wrk, "wrk is not installed"
    return wrk


def paying_user(settings: StackSettings) -> str:
    """A user who bought and paid the demo plan, so the access check answers allowed=true."""
    user = BillingClient(settings)
    bought = user.buy(DEMO_PLAN_ID)
    bought.raise_for_status()
    payment = bought.json()["payment"]
    result = PaymentPage(settings, payment["payment_url"]).pay(CARD_OK)
    assert result.status == "succeeded", result.body
    assert user.wait_for_payment(payment["id"], {"succeeded"})["status"] == "succeeded"
    assert user.access(COVERED_FILM_ID).json()["allowed"] is True
    return user.user_id


def run_wrk(wrk: str, url: str, token: str | None, args: argparse.Namespace) -> dict[str, float]:
    command = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99_value, p99_unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        raise SystemExit(f"{url}: {non_2xx.group(1)} failed responses\n{out}")
    return {"rps": rps, "p99_ms": float(p99_value) * UNITS[p99_unit]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    settings = StackSettings.load()
    wrk = ensure_wrk()
    user_id = paying_user(settings)
    token = service_token(settings, "movies", "billing", ttl=3600)
    access_url = (
        f"{settings.billing_url}/internal/v1/access?user_id={user_id}&film_id={COVERED_FILM_ID}"
    )
    health_url = f"{settings.billing_url}/health"

    run_wrk(wrk, access_url, token, argparse.Namespace(**{**vars(args), "duration": 2}))  # warm-up
    health = run_wrk(wrk, health_url, None, args)
    access = run_wrk(wrk, access_url, token, args)
    ratio = access["rps"] / health["rps"]
    print(
        f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration}s per endpoint\n"
        f"health: {health['rps']:.0f} req/s, p99 {health['p99_ms']:.1f} ms\n"
        f"access: {access['rps']:.0f} req/s, p99 {access['p99_ms']:.1f} ms\n"
        f"ratio access/health: {ratio:.2f} (target >= 0.70)"
    )
    return 0 if ratio >= 0.70 else 1


if __name__ == "__main__":
    sys.exit(main())
