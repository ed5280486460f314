"""Create or update a promo code from the command line, with the admin form's rules (one kind of
discount, plans, Stripe's minimum charge). Idempotent by code (any case): the same arguments twice
change nothing the second time. An amount off is typed in its currency's units, as in the admin
("3.00" USD, "300" JPY).

    manage.py promo_code WELCOME20 --percent-off 20 --max-redemptions 100 --max-per-user 1
    manage.py promo_code SAVE3 --amount-off 3.00 --currency usd --duration repeating --periods 3
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.forms.models import model_to_dict

from catalog.admin import PromoCodeForm
from catalog.models import PromoCode


def _state(promo: PromoCode, plans=None) -> dict:
    """What the command sets, to tell an update from a repeat (plans: the form's, or the row's)."""
    values = model_to_dict(promo, exclude=["id", "plans", "description"])
    chosen = plans if plans is not None else promo.plans.all()
    return {**values, "plans": sorted(plan.pk for plan in chosen)}


class Command(BaseCommand):
    help = "Create or update a promo code (the admin form's validation)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("code")
        kind = parser.add_mutually_exclusive_group(required=True)
        kind.add_argument("--percent-off", type=int)
        kind.add_argument("--amount-off", help="in --currency's units: 3.00 (USD), 300 (JPY)")
        parser.add_argument("--currency", default="")
        parser.add_argument("--duration", choices=["once", "repeating", "forever"], default="once")
        parser.add_argument("--periods", type=int, help="payments discounted (repeating)")
        parser.add_argument("--max-redemptions", type=int)
        parser.add_argument("--max-per-user", type=int, help="empty: no limit per user")
        parser.add_argument("--first-purchase-only", action="store_true")
        parser.add_argument("--valid-from", default="")
        parser.add_argument("--valid-until", default="")
        parser.add_argument("--plan", action="append", default=[], help="plan id (repeat)")
        parser.add_argument("--inactive", action="store_true")

    def handle(self, *args, **options) -> None:
        data = {
            "code": options["code"],
            "description": "",
            "percent_off": options["percent_off"],
            "amount_off": options["amount_off"],
            "currency": options["currency"],
            "duration": options["duration"],
            "duration_periods": options["periods"],
            "max_redemptions": options["max_redemptions"],
            "max_per_user": options["max_per_user"],
            "first_purchase_only": options["first_purchase_only"],
            "valid_from": options["valid_from"],
            "valid_until": options["valid_until"],
            "all_plans": not options["plan"],
            "plans": options["plan"],
            "active": not options["inactive"],
        }
        with transaction.atomic():
            existing = PromoCode.objects.filter(code__iexact=options["code"]).first()
            before = _state(existing) if existing is not None else None
            form = PromoCodeForm(
                {k: v for k, v in data.items() if v is not None}, instance=existing
            )
            if not form.is_valid():
                problems = "; ".join(
                    f"{field}: {' '.join(errors)}" if field != "__all__" else " ".join(errors)
                    for field, errors in form.errors.items()
                )
                raise CommandError(f"promo code refused: {problems}")
            changed = before != _state(form.instance, form.cleaned_data["plans"])
            promo = form.save() if changed else existing
        verb = "created" if existing is None else ("updated" if changed else "unchanged")
        self.stdout.write(f"promo code {promo.code} {verb}: {promo.pk}")
