"""How long a manager's change in the admin takes to show in billing (`make up` running).

    .venv/bin/python bench/etl_lag.py [--rounds 5]

Each round saves the demo plan with a new description through Django (as the admin panel does),
then polls billing's public plan list until the new description shows. Target: within 10 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration_tests.clients import BillingClient, StackSettings  # noqa: E402
from integration_tests.scenario import DEMO_PLAN_ID  # noqa: E402

SAVE = """
from catalog.models import Plan
plan = Plan.objects.get(pk="{plan_id}")
plan.description = "{description}"
plan.save()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = StackSettings.load()
    user = BillingClient(settings)
    lags = []
    for _ in range(args.rounds):
        description = f"Everything we show (probe {uuid.uuid4().hex[:8]})"
        subprocess.run(
            [
                sys.executable,
                "admin/manage.py",
                "shell",
                "-v",
                "0",
                "-c",
                SAVE.format(plan_id=DEMO_PLAN_ID, description=description),
            ],
            env=settings.env(),
            cwd=ROOT,
            check=True,
        )
        saved = time.monotonic()
        while not any(p["description"] == description for p in user.plans().json()["items"]):
            if time.monotonic() - saved > 30:
                print("the change did not reach billing within 30 s")
                return 1
            time.sleep(0.05)
        lags.append(time.monotonic() - saved)
    print(
        f"admin → billing, {args.rounds} changes: "
        + ", ".join(f"{lag:.2f} s" for lag in lags)
        + f"; worst {max(lags):.2f} s (target ≤ 10 s; ETL_INTERVAL_SECONDS="
        + f"{settings.values.get('ETL_INTERVAL_SECONDS', '2')})"
    )
    return 0 if max(lags) <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
