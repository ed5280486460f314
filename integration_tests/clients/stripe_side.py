"""Stripe's side of the truth (localstripe here), read with the secret key, as an auditor would.

The fault tests and the chaos run compare billing's view of every payment with this."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .stack import StackSettings


@dataclass
class StripePayment:
    """Everything Stripe holds for one billing payment (by `metadata.payment_id`)."""

    payment_id: str
    intents: list[dict[str, Any]] = field(default_factory=list)
    charges: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded_charges(self) -> list[dict[str, Any]]:
        return [c for c in self.charges if c["status"] == "succeeded"]

    @property
    def charged(self) -> int:
        return sum(c["amount"] for c in self.succeeded_charges)

    @property
    def refunded(self) -> int:
        return sum(r["amount"] for r in self.refunds if r["status"] == "succeeded")


class StripeSide:
    def __init__(self, settings: StackSettings):
        base = f"http://127.0.0.1:{settings['LOCALSTRIPE_PORT']}"
        self.http = httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {settings['STRIPE_SECRET_KEY']}"},
            timeout=30,
        )

    def _list(self, path: str) -> Iterator[dict[str, Any]]:
        starting_after = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            page = self.http.get(path, params=params)
            page.raise_for_status()
            body = page.json()
            yield from body["data"]
            if not body.get("has_more") or not body["data"]:
                return
            starting_after = body["data"][-1]["id"]

    def payments(self) -> dict[str, StripePayment]:
        """Every billing payment Stripe knows of, with its intents, charges and refunds."""
        by_payment: dict[str, StripePayment] = {}
        payment_of_intent: dict[str, str] = {}
        for intent in self._list("/v1/payment_intents"):
            payment_id = (intent.get("metadata") or {}).get("payment_id")
            if not payment_id:
                continue
            by_payment.setdefault(payment_id, StripePayment(payment_id)).intents.append(intent)
            payment_of_intent[intent["id"]] = payment_id
        charges_of_intent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for charge in self._list("/v1/charges"):
            if charge.get("payment_intent") in payment_of_intent:
                charges_of_intent[charge["payment_intent"]].append(charge)
        charge_payment = {}
        for intent_id, charges in charges_of_intent.items():
            by_payment[payment_of_intent[intent_id]].charges.extend(charges)
            for charge in charges:
                charge_payment[charge["id"]] = payment_of_intent[intent_id]
        for refund in self._list("/v1/refunds"):
            if refund.get("charge") in charge_payment:
                by_payment[charge_payment[refund["charge"]]].refunds.append(refund)
        return by_payment

    def payment(self, payment_id: str) -> StripePayment:
        return self.payments().get(payment_id, StripePayment(payment_id))

    def customer_charges(self, customer_id: str) -> list[dict[str, Any]]:
        """Every charge Stripe made on one customer, whatever its metadata says."""
        return [c for c in self._list("/v1/charges") if c.get("customer") == customer_id]
