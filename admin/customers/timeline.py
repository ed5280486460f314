"""A customer's timeline: items from several sources merged in time order. billing's items
(purchases, payment attempts and outcomes, refunds — and whatever billing adds, e.g. renewals and
emails sent) and the managers' actions from the audit log. A new source is one function more in
SOURCES, returning items of the same shape."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from audit.models import AuditEntry
from catalog.currencies import format_money
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from customers import billing


def _billing_items(user_id: uuid.UUID) -> list[dict]:
    items = []
    for item in billing.user_timeline(user_id=user_id):
        payment_id = item.get("payment_id")
        amount, currency = item.get("amount"), item.get("currency")
        items.append(
            {
                "at": parse_datetime(item["at"]),
                "kind": item["kind"],
                "title": item["title"],
                "status": item.get("status"),
                "amount_display": format_money(amount, currency) if amount and currency else "",
                "source": "billing",
                "url": reverse("admin:customers_payment", args=[payment_id]) if payment_id else "",
                "ref": payment_id or item.get("subscription_id") or "",
            }
        )
    return items


def _manager_actions(user_id: uuid.UUID) -> list[dict]:
    return [
        {
            "at": entry.at,
            "kind": f"manager_{entry.action}",
            "title": f"{entry.actor}: {entry.get_action_display()} {entry.target_type} "
            f"{entry.target_repr or entry.target_id}",
            "status": None,
            "amount_display": entry.changes.get("amount_display", ""),
            "source": "audit log",
            "reason": entry.reason,
            "url": reverse("admin:audit_auditentry_change", args=[entry.pk]),
            "ref": entry.target_id,
        }
        for entry in AuditEntry.objects.filter(customer_id=user_id)
    ]


SOURCES: tuple[Callable[[uuid.UUID], list[dict]], ...] = (_billing_items, _manager_actions)


def items(*, user_id: uuid.UUID) -> list[dict]:
    """Every source's items, oldest first."""
    merged: list[dict] = []
    for source in SOURCES:
        merged.extend(source(user_id))
    return sorted(merged, key=lambda item: (item["at"] or datetime.min, item["kind"]))
