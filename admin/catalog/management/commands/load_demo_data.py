"""Load the demo catalog (fixed ids, so every demo and test sees the same rows). Idempotent:
rows already equal to the demo are not touched, so updated_at — and etl — stay quiet."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand
from django.db import transaction

from catalog.models import Film, Plan, PromoCode

MATRIX_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
INCEPTION_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
NOSFERATU_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")
PREMIUM_MONTHLY_ID = uuid.UUID("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa")
WELCOME20_ID = uuid.UUID("cccccccc-cccc-4ccc-8ccc-cccccccccccc")

# 20% off the first payment, once per user, any plan: `make demo` buys with it.
DEMO_PROMO_CODES = {
    WELCOME20_ID: {
        "code": "WELCOME20",
        "description": "20% off the first payment (demo).",
        "percent_off": 20,
        "duration": "once",
        "max_redemptions": None,
        "max_per_user": 1,
        "all_plans": True,
        "active": True,
    },
}

DEMO_FILMS = {
    MATRIX_ID: {
        "title": "The Matrix",
        "description": "A hacker learns what the world really is. Covered by Premium monthly.",
        "active": True,
    },
    INCEPTION_ID: {
        "title": "Inception",
        "description": "A thief who steals secrets through dreams. Covered by Premium monthly.",
        "active": True,
    },
    NOSFERATU_ID: {
        "title": "Nosferatu (1922)",
        "description": "Public domain silent classic; covered by no plan, so free to watch.",
        "active": True,
    },
}

DEMO_PLANS = {
    PREMIUM_MONTHLY_ID: {
        "fields": {
            "name": "Premium monthly",
            "description": "The Matrix and Inception, billed every month.",
            "price_amount": 999,
            "currency": "usd",
            "period_unit": Plan.PeriodUnit.MONTH,
            "period_count": 1,
            "refund_window_days": 14,
            "active": True,
            "all_films": False,
        },
        "films": {MATRIX_ID, INCEPTION_ID},
    },
}


def _upsert(model, pk: uuid.UUID, fields: dict) -> tuple[object, str]:
    """Create the row, or bring it back to the demo values; 'created' | 'updated' | 'unchanged'."""
    obj = model.objects.filter(pk=pk).first()
    if obj is None:
        obj = model(pk=pk, **fields)
        obj.full_clean()
        obj.save()
        return obj, "created"
    differing = [name for name, value in fields.items() if getattr(obj, name) != value]
    if not differing:
        return obj, "unchanged"
    for name in differing:
        setattr(obj, name, fields[name])
    obj.full_clean()
    obj.save()
    return obj, "updated"


class Command(BaseCommand):
    help = "Create or restore the demo films, plan and promo code (fixed ids; safe to run again)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        for film_id, fields in DEMO_FILMS.items():
            film, outcome = _upsert(Film, film_id, fields)
            self.stdout.write(f"film {film.pk} {film.title!r}: {outcome}")
        for plan_id, spec in DEMO_PLANS.items():
            plan, outcome = _upsert(Plan, plan_id, spec["fields"])
            current_films = set(plan.films.values_list("pk", flat=True))
            if current_films != spec["films"]:
                plan.films.set(spec["films"])  # bumps updated_at through catalog.signals
                outcome = "updated" if outcome == "unchanged" else outcome
            self.stdout.write(f"plan {plan.pk} {plan.name!r}: {outcome}")
        for promo_id, fields in DEMO_PROMO_CODES.items():
            promo, outcome = _upsert(PromoCode, promo_id, fields)
            self.stdout.write(f"promo code {promo.pk} {promo.code!r}: {outcome}")
