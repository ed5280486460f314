"""The catalog as a manager changes it: the admin's own management commands (the same validation
as its forms) against the stack's admin database, then one etl pass to copy it into billing."""

from __future__ import annotations

import subprocess
import sys

from .stack import ROOT, StackSettings


def _run(settings: StackSettings, *command: str) -> str:
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=settings.env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def manage(settings: StackSettings, *args: str) -> str:
    """`admin/manage.py <args>`; its output."""
    return _run(settings, "admin/manage.py", *args)


def copy_to_billing(settings: StackSettings) -> None:
    """One etl pass (`python -m etl --once`): what the admin changed is in billing after it."""
    _run(settings, "-m", "etl", "--once")


def promo_code(settings: StackSettings, code: str, *options: str) -> str:
    """Create (or update) a promo code with `manage.py promo_code`, copy it to billing; its id."""
    output = manage(settings, "promo_code", code, *options)
    copy_to_billing(settings)
    return output.strip().rsplit(": ", 1)[-1]


def plan(
    settings: StackSettings,
    plan_id: str,
    name: str,
    price_amount: int,
    *,
    period_unit: str = "month",
    period_count: int = 1,
    refund_window_days: int = 14,
) -> None:
    """A plan of `period_count` `period_unit`s covering every film (made as the admin's Django
    would), copied to billing."""
    manage(
        settings,
        "shell",
        "-c",
        "from catalog.models import Plan; "
        f"Plan.objects.update_or_create(pk={plan_id!r}, defaults=dict(name={name!r}, "
        f"price_amount={price_amount}, currency='usd', all_films=True, active=True, "
        f"period_unit={period_unit!r}, period_count={period_count}, "
        f"refund_window_days={refund_window_days}))",
    )
    copy_to_billing(settings)
