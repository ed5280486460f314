"""Renewals under faults: subscribers of a one-day (or two-day) plan, the stack's clock moved to
their renewal, billing's and Stripe's views of it, and the audit of both (`audit.renewal_problems`).

Day plans keep each test's clock moves to a day or three, so the month plans the other tests sold
never fall due meanwhile: the renewal a test breaks is the only one being charged. Each test's
subscriptions are ended afterwards (`end_all`) so that later moves of the clock leave them alone.

billing's workers run behind a second `FaultProxy` (`worker_env` points their PAY_API_URL at it):
the tests see what the workers ask pay_api and can lose pay_api's answers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from integration_tests.clients import (
    CARD_OK,
    BillingClient,
    Mailbox,
    PaymentPage,
    StackClock,
    catalog,
    links_in,
)
from integration_tests.clients.stripe_side import StripePayment
from integration_tests.faults.audit import renewal_problems
from integration_tests.faults.proxy import FaultProxy
from integration_tests.faults.tools import Faults
from integration_tests.renewal_scenario import USERS_DOMAIN

DAY_PLAN_ID = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
DAY_PLAN_NAME = "Everything for a day"
# For a declined renewal's automatic retry (a day after the period's end with the stack's
# BILLING_RENEWAL_RETRY_DAYS): a period longer than that, so the retry falls within it.
TWO_DAY_PLAN_ID = "dddddddd-dddd-4ddd-8ddd-ddddddddddd2"

# what billing's workers ask pay_api (through the workers' proxy: renewals are charged in
# batches, a batch holds a payment when its body names it), and Stripe's confirmation
CHARGES = r"/internal/v1/renewals/charges"
CONFIRM = r"/v1/payment_intents/\w+/confirm"


def confirm_path(intent_id: str) -> str:
    """pay_api's confirmation of one PaymentIntent at Stripe (a proxy's path pattern)."""
    return f"/v1/payment_intents/{intent_id}/confirm"


def day_plans(stack) -> None:
    """The plans the renewal fault tests sell: one day and two days, every film, no refund
    window (a cancel is always at the period's end)."""
    for plan_id, name, days in ((DAY_PLAN_ID, DAY_PLAN_NAME, 1), (TWO_DAY_PLAN_ID, "Two days", 2)):
        catalog.plan(
            stack,
            plan_id,
            name,
            199 * days,
            period_unit="day",
            period_count=days,
            refund_window_days=0,
        )


# A worker's lease on the row it works on: longer than a test holds a request, so that no other
# job (the reconciler) takes the row meanwhile unless the test lets the lease run out. Leases are
# on the wall clock (billing.payments.service.lease_until), not on billing's movable clock.
WORKER_CLAIM = timedelta(seconds=60)


def worker_env(proxy: FaultProxy) -> dict[str, str]:
    """billing's workers through the proxy; their calls wait on pay_api longer than a test holds
    one of its requests (pay_api's own Stripe timeout still applies)."""
    return {
        "PAY_API_URL": proxy.url,
        "BILLING_PAY_API_TIMEOUT": "30",
        "BILLING_WORKER_CLAIM_SECONDS": str(int(WORKER_CLAIM.total_seconds())),
    }


@dataclass
class Subscriber:
    user: BillingClient
    subscription_id: str
    old_end: datetime  # the end of the paid period the renewal continues from
    period: timedelta  # the plan's period

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def address(self) -> str:
        return f"{self.user_id}@{USERS_DOMAIN}"


@dataclass
class Renewals:
    faults: Faults
    workers_proxy: FaultProxy
    on_exchange: Callable[[Any], None] | None = None
    subscribers: list[Subscriber] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = self.faults.settings
        self.clock = StackClock(self.settings, self.on_exchange)
        self.mail = Mailbox(self.settings, self.on_exchange)
        self.admin = self.faults.billing_admin.http
        self.lead = timedelta(
            seconds=float(self.settings.values.get("BILLING_RENEWAL_LEAD_SECONDS", 3600))
        )

    # --- the workers -------------------------------------------------------------------------

    def start_workers(self) -> None:
        self.faults.stack("start", *self.faults.billing_workers, **worker_env(self.workers_proxy))

    def stop_workers(self) -> None:
        self.faults.stack("stop", *self.faults.billing_workers)

    # --- a subscriber and the clock ----------------------------------------------------------

    def subscribe(self, card: str = CARD_OK, plan_id: str = DAY_PLAN_ID) -> Subscriber:
        """A new user buys the plan and pays with `card` (saved for the renewals)."""
        user = BillingClient(self.settings, on_exchange=self.on_exchange)
        bought = user.buy(plan_id)
        assert bought.status_code == 201, bought.text
        payment = bought.json()["payment"]
        paid = PaymentPage(self.settings, payment["payment_url"], self.on_exchange).pay(card)
        assert paid.status == "succeeded", paid.body
        subscription = user.wait_for_subscription(
            bought.json()["subscription"]["id"], lambda s: s["status"] == "active"
        )
        assert subscription["status"] == "active", subscription
        start, end = (
            datetime.fromisoformat(subscription[f"current_period_{edge}"])
            for edge in ("start", "end")
        )
        subscriber = Subscriber(user, subscription["id"], old_end=end, period=end - start)
        self.subscribers.append(subscriber)
        return subscriber

    def move_to_renewal(self, *subscribers: Subscriber) -> datetime:
        """The clock to where every one's renewal is due (within the lead time before the end)."""
        return self.clock.move_to(max(s.old_end for s in subscribers) - self.lead / 2)

    def move_past_leases(self) -> datetime:
        """Past the workers' leases: a lease a copy took (before this call) is over for the
        others. Leases run on the wall clock, so this waits one lease of real time; billing's
        clock moves on as far, so that what falls due meanwhile falls due as it did."""
        time.sleep(WORKER_CLAIM.total_seconds() + 1)
        return self.clock.move_by(WORKER_CLAIM * 2)

    # --- billing's view ----------------------------------------------------------------------

    def subscription(self, subscriber: Subscriber) -> dict[str, Any]:
        """The subscription as a manager sees it (with its renewal state)."""
        answer = self.admin.get(f"/internal/v1/users/{subscriber.user_id}/subscriptions")
        answer.raise_for_status()
        return next(s for s in answer.json()["items"] if s["id"] == subscriber.subscription_id)

    def payments(self, subscriber: Subscriber) -> list[dict[str, Any]]:
        answer = self.admin.get(f"/internal/v1/users/{subscriber.user_id}/payments")
        answer.raise_for_status()
        return [
            p for p in answer.json()["items"] if p["subscription_id"] == subscriber.subscription_id
        ]

    def renewal(self, subscriber: Subscriber) -> dict[str, Any] | None:
        """The renewal payment of the period that starts at the old end (one at most)."""
        of_period = [
            p
            for p in self.payments(subscriber)
            if p["kind"] == "renewal"
            and datetime.fromisoformat(p["period_start"]) == subscriber.old_end
        ]
        assert len(of_period) <= 1, of_period
        return of_period[0] if of_period else None

    def wait_for_renewal(self, subscriber: Subscriber, timeout: float = 60) -> dict[str, Any]:
        renewal = wait(lambda: self.renewal(subscriber), timeout)
        assert renewal is not None, "the renewal payment was never written"
        return renewal

    def wait_subscription(
        self, subscriber: Subscriber, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """The subscription once `done(it)`; its last view otherwise."""

        def finished() -> dict[str, Any] | None:
            subscription = self.subscription(subscriber)
            return subscription if done(subscription) else None

        return wait(finished, timeout) or self.subscription(subscriber)

    def wait_renewed(self, subscriber: Subscriber, timeout: float = 60) -> dict[str, Any]:
        """The subscription once its period runs from the old end (the renewal was applied)."""
        return self.wait_subscription(
            subscriber, lambda s: _instant(s["current_period_start"]) == subscriber.old_end, timeout
        )

    def renewed_once(self, subscription: dict[str, Any], subscriber: Subscriber) -> bool:
        """Extended from the old end by exactly one period of the plan."""
        return (
            _instant(subscription["current_period_start"]),
            _instant(subscription["current_period_end"]),
        ) == (subscriber.old_end, subscriber.old_end + subscriber.period)

    def email(self, subscriber: Subscriber, subject_part: str, link_part: str) -> str:
        """The link in the newest email about `subject_part` that contains `link_part`."""
        message = self.mail.wait_for(subscriber.address, subject_part)
        link = next((url for url in links_in(message) if link_part in url), None)
        assert link is not None, f"no {link_part} link in: {message['text']}"
        return link

    # --- Stripe's view and the audit ---------------------------------------------------------

    def at_stripe(self, subscriber: Subscriber) -> dict[str, StripePayment]:
        """What Stripe holds for each of the subscription's payments."""
        everything = self.faults.stripe.payments()
        return {
            p["id"]: everything.get(p["id"], StripePayment(p["id"]))
            for p in self.payments(subscriber)
        }

    def customers(self, subscriber: Subscriber) -> set[str]:
        """The Stripe customers of the subscription's PaymentIntents (one, the user's)."""
        stripe = self.at_stripe(subscriber)
        return {i["customer"] for s in stripe.values() for i in s.intents if i["customer"]}

    def customer_charges(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's successful charges at Stripe."""
        charges = self.faults.stripe.customer_charges(customer_id)
        return [c for c in charges if c["status"] == "succeeded"]

    def audit(self, subscriber: Subscriber) -> list[str]:
        payments = self.payments(subscriber)
        stripe = self.at_stripe(subscriber)
        customers = {i["customer"] for s in stripe.values() for i in s.intents if i["customer"]}
        found = [] if len(customers) <= 1 else [f"intents on {len(customers)} customers"]
        charges = [c for c in customers for c in self.faults.stripe.customer_charges(c)]
        subscription = self.subscription(subscriber)
        return found + renewal_problems(subscription, payments, stripe, charges)

    def settle_and_audit(self, subscriber: Subscriber, timeout: float = 60) -> list[str]:
        """Wait for billing to agree with Stripe on the subscription; what still disagrees."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.audit(subscriber)
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    # --- afterwards --------------------------------------------------------------------------

    def end_all(self) -> None:
        """End every subscription of the test (a manager's End): no later renewal of theirs."""
        for subscriber in self.subscribers:
            answer = self.admin.post(
                f"/internal/v1/subscriptions/{subscriber.subscription_id}/end",
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert answer.status_code in (200, 409), answer.text  # 409: it had ended


def wait(probe: Callable[[], Any], timeout: float) -> Any:
    """Poll `probe` until it answers something truthy; None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
