"""The cinema's user scenario, step by step, over HTTP only.

`make demo` prints one line per step; the integration test wraps each step in an Allure step of the
same name. A step returns a short human summary and raises `StepFailed` when the system misbehaves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_precision

from .clients import CARD_OK, BillingClient, PaymentPage, StackSettings, catalog
from .clients.stripe_side import StripeSide

# The demo data `admin/manage.py load_demo_data` creates (fixed ids, so the scenario can name them)
DEMO_PLAN_ID = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
COVERED_FILM_ID = "11111111-1111-4111-8111-111111111111"
DEMO_PROMO_CODE = "WELCOME20"  # 20% off the first payment
FREE_FILM_ID = "33333333-3333-4333-8333-333333333333"


def money(amount: int, currency: str) -> str:
    """An amount in minor units as people read it: money(999, "usd") → "$9.99", (500, "jpy") → "¥500"."""
    code = currency.upper()
    return format_currency(
        Decimal(amount).scaleb(-get_currency_precision(code)), code, locale="en_US"
    )


class StepFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Scenario:
    settings: StackSettings
    on_exchange: Callable[[Any], None] | None = None
    user: BillingClient | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    payment: dict[str, Any] = field(default_factory=dict)
    subscription: dict[str, Any] = field(default_factory=dict)

    def steps(self) -> Iterator[tuple[str, Callable[[], str]]]:
        """(name, step) pairs in the order a user lives them."""
        yield "Seed films and a plan in the admin database", self.seed
        yield "Get a user token", self.get_token
        yield "List the available plans", self.list_plans
        yield "Check the user may not watch a covered film", self.check_no_access
        yield "User buys the plan and gets a payment link", self.buy
        yield "Pay on the payment page with card 4242", self.pay
        yield "Wait for the payment", self.wait_for_payment
        yield "Stripe charged the discounted amount", self.check_stripe_charge
        yield "Check the user may watch", self.check_access
        yield "User cancels within the refund window", self.cancel
        yield "The refund shows in the payment history", self.check_refund_in_history
        yield "Check the user may no longer watch", self.check_no_access_after_refund

    # --- steps -------------------------------------------------------------------------------

    def seed(self) -> str:
        catalog.manage(self.settings, "load_demo_data")
        catalog.copy_to_billing(self.settings)
        listed = BillingClient(self.settings, on_exchange=self.on_exchange).plans()
        expect(listed.status_code == 200, f"GET /plans answered {listed.status_code}")
        expect(
            DEMO_PLAN_ID in {plan["id"] for plan in listed.json()["items"]},
            "the demo plan did not reach billing",
        )
        return f"demo plan {DEMO_PLAN_ID} and promo code {DEMO_PROMO_CODE} copied to billing"

    def get_token(self) -> str:
        self.user = BillingClient(self.settings, on_exchange=self.on_exchange)
        return f"user {self.user.user_id}"

    def list_plans(self) -> str:
        response = self._user.plans()
        expect(response.status_code == 200, f"GET /plans answered {response.status_code}")
        plans = {plan["id"]: plan for plan in response.json()["items"]}
        expect(DEMO_PLAN_ID in plans, "the demo plan is not listed")
        self.plan = plans[DEMO_PLAN_ID]
        price = money(self.plan["price"]["amount"], self.plan["price"]["currency"])
        return f"{len(plans)} plan(s); '{self.plan['name']}' at {price}"

    def check_no_access(self) -> str:
        return self._expect_access(COVERED_FILM_ID, allowed=False)

    def buy(self) -> str:
        response = self._user.buy(
            DEMO_PLAN_ID, idempotency_key=f"demo-{self._user.user_id}", promo_code=DEMO_PROMO_CODE
        )
        expect(response.status_code == 201, f"POST /subscriptions answered {response.status_code}")
        self.payment = response.json()["payment"]
        self.subscription = response.json()["subscription"]
        expect(self.payment["status"] == "pending", f"payment is {self.payment['status']}")
        price = self.plan["price"]["amount"]
        expect(
            (self.payment["gross_amount"], self.payment["amount"])
            == (price, price - (price * 20 + 50) // 100),
            f"expected {price} less 20%, got {self.payment}",
        )
        currency = self.payment["currency"]
        return (
            f"{DEMO_PROMO_CODE}: {money(self.payment['gross_amount'], currency)} - "
            f"{money(self.payment['discount_amount'], currency)} = "
            f"{money(self.payment['amount'], currency)}; "
            f"payment {self.payment['id']} {self.payment['status']}: "
            f"{self.payment['payment_url']}"
        )

    def pay(self) -> str:
        page = PaymentPage(self.settings, self.payment["payment_url"], self.on_exchange)
        opened = page.open()
        expect(opened.status_code == 200, f"the payment page answered {opened.status_code}")
        result = page.pay(CARD_OK)
        expect(result.status == "succeeded", f"the charge answered {result.status}: {result.body}")
        return "charged"

    def wait_for_payment(self) -> str:
        started = time.monotonic()
        payment = self._user.wait_for_payment(self.payment["id"], {"succeeded"})
        expect(payment["status"] == "succeeded", f"payment stayed {payment['status']}")
        self.payment = payment
        return f"succeeded after {time.monotonic() - started:.1f} s"

    def check_stripe_charge(self) -> str:
        stripe = StripeSide(self.settings).payment(self.payment["id"])
        expect(
            stripe.charged == self.payment["amount"] < self.payment["gross_amount"],
            f"Stripe charged {stripe.charged}; billing's net is {self.payment['amount']}",
        )
        charged = money(stripe.charged, self.payment["currency"])
        return f"Stripe charged {charged} (the discounted price)"

    def check_access(self) -> str:
        return self._expect_access(COVERED_FILM_ID, allowed=True)

    def cancel(self) -> str:
        response = self._user.cancel(self.subscription["id"])
        expect(response.status_code == 200, f"cancel answered {response.status_code}")
        body = response.json()
        expect(
            body["subscription"]["status"] == "refunded", f"subscription is {body['subscription']}"
        )
        return f"{body.get('message', 'refunded')}"

    def check_refund_in_history(self) -> str:
        payment = self._user.wait_for_payment(self.payment["id"], {"refunded"})
        expect(payment["status"] == "refunded", f"payment is {payment['status']}")
        refunds = payment["refunds"]
        expect(len(refunds) == 1, f"{len(refunds)} refunds in the history")
        expect(refunds[0]["amount"] == payment["amount"], "the refund is not the full amount")
        listed = self._user.payments().json()["items"]
        expect(any(p["id"] == payment["id"] and p["status"] == "refunded" for p in listed), "")
        return f"refund of {money(refunds[0]['amount'], refunds[0]['currency'])} {refunds[0]['status']}"

    def check_no_access_after_refund(self) -> str:
        return self._expect_access(COVERED_FILM_ID, allowed=False)

    # --- helpers -----------------------------------------------------------------------------

    @property
    def _user(self) -> BillingClient:
        expect(self.user is not None, "no user token yet")
        assert self.user is not None
        return self.user

    def _expect_access(self, film_id: str, allowed: bool) -> str:
        response = self._user.access(film_id)
        expect(response.status_code == 200, f"access answered {response.status_code}")
        body = response.json()
        expect(body["allowed"] is allowed, f"expected allowed={allowed}, got {body}")
        return f"allowed={body['allowed']} reason={body['reason']} until={body['until']}"
