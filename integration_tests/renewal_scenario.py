"""Renewals, step by step, over HTTP only: the stack's clock is moved forward (billing's test
clock, on in every stack `scripts/stack.sh` starts), the worker renews, and the users read their
real emails (the stack's mail server) and follow the links in them.

`make demo` plays these steps after the user scenario; the integration test wraps each in an Allure
step. Moving the clock affects the whole stack, so this runs last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from .clients import (
    CARD_DECLINED_AT_CHARGE,
    CARD_OK,
    BillingClient,
    Mailbox,
    PaymentPage,
    StackClock,
    StackSettings,
    links_in,
)
from .scenario import COVERED_FILM_ID, DEMO_PLAN_ID, expect

USERS_DOMAIN = "users.cinema.local"  # billing's default BILLING_MAIL_TO


@dataclass
class Subscriber:
    client: BillingClient
    subscription: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.client.user_id}@{USERS_DOMAIN}"

    @property
    def period_end(self) -> datetime:
        return datetime.fromisoformat(self.subscription["current_period_end"])


@dataclass
class RenewalScenario:
    settings: StackSettings
    on_exchange: Callable[[Any], None] | None = None
    people: dict[str, Subscriber] = field(default_factory=dict)

    def steps(self) -> Iterator[tuple[str, Callable[[], str]]]:
        yield "A subscriber pays with card 4242, saved for renewals", self.subscribe_alice
        yield "Move the clock to the period's end: renewed with the saved card", self.renew_alice
        yield "A subscriber's saved card is now 4000 0000 0000 0341", self.subscribe_bob
        yield "Move the clock: the renewal is declined, past_due", self.decline_bob
        yield "After the period's end the user still watches (grace)", self.grace_bob
        yield "The user follows the emailed link and pays with 4242: active", self.card_update_bob
        yield (
            "A subscriber cancels after the refund window: watches until the end",
            self.cancel_carol,
        )
        yield "After the period's end the canceled subscriber may not watch", self.ended_carol

    # --- steps -------------------------------------------------------------------------------

    def subscribe_alice(self) -> str:
        alice = self.people["alice"] = self._subscribe()
        return f"subscription {alice.subscription['id']} active until {alice.period_end:%Y-%m-%d}"

    def renew_alice(self) -> str:
        alice = self.people["alice"]
        old_end = alice.period_end
        self._move_clock_to(old_end - timedelta(minutes=30))
        renewed = alice.client.wait_for_subscription(
            alice.subscription["id"], lambda s: starts_at(s, old_end)
        )
        expect(
            renewed["status"] == "active" and starts_at(renewed, old_end), f"not renewed: {renewed}"
        )
        alice.subscription = renewed
        # The first payment's receipt is there already: wait for the renewal's own.
        receipt = self._mail().wait_for(alice.address, "Receipt", text_part="renewed")
        expect("renewed" in receipt["text"], f"no renewal receipt: {receipt['text']}")
        access = self._access(alice, allowed=True)
        return f"period {old_end:%Y-%m-%d} → {alice.period_end:%Y-%m-%d}; receipt emailed; {access}"

    def subscribe_bob(self) -> str:
        bob = self.people["bob"] = self._subscribe()
        link = bob.client.card_link(bob.subscription["id"])
        expect(link.status_code == 200, f"card link answered {link.status_code}")
        saved = self._page(link.json()["url"]).save_card(
            link.json()["url"], CARD_DECLINED_AT_CHARGE
        )
        expect(saved.status == "saved", f"the card page answered {saved.body}")
        return "card 0341 saved on the card-update page (it saves fine and declines at a charge)"

    def decline_bob(self) -> str:
        bob = self.people["bob"]
        self._move_clock_to(bob.period_end - timedelta(minutes=30))
        past_due = bob.client.wait_for_subscription(
            bob.subscription["id"], lambda s: s["status"] == "past_due"
        )
        expect(past_due["status"] == "past_due", f"subscription is {past_due['status']}")
        bob.subscription = past_due
        email = self._mail().wait_for(bob.address, "did not go through")
        return f"past_due, grace until {past_due['grace_until']}; emailed: {email['subject']!r}"

    def grace_bob(self) -> str:
        bob = self.people["bob"]
        self._move_clock_to(bob.period_end + timedelta(hours=1))
        body = self._access(bob, allowed=True)
        expect("reason=grace" in body, f"not in grace: {body}")
        return body

    def card_update_bob(self) -> str:
        bob = self.people["bob"]
        email = self._mail().wait_for(bob.address, "did not go through")
        link = next((url for url in links_in(email) if "/card?t=" in url), None)
        expect(link is not None, f"no card link in the email: {email['text']}")
        page = self._page(link)
        opened = page.page.get(link)
        expect(opened.status_code == 200, f"the emailed link answered {opened.status_code}")
        paid = PaymentPage(self.settings, link.split("/card?")[0], self.on_exchange).pay(CARD_OK)
        expect(paid.status == "succeeded", f"the new card answered {paid.status}: {paid.body}")
        active = bob.client.wait_for_subscription(
            bob.subscription["id"], lambda s: s["status"] == "active"
        )
        expect(active["status"] == "active", f"subscription is {active['status']}")
        expect(starts_at(active, bob.period_end), "the new period does not start at the old end")
        bob.subscription = active
        return f"active until {bob.period_end:%Y-%m-%d}; {self._access(bob, allowed=True)}"

    def cancel_carol(self) -> str:
        carol = self.people["carol"] = self._subscribe()
        self._move_by(timedelta(days=15))  # past the plan's refund window
        response = carol.client.cancel(carol.subscription["id"])
        expect(response.status_code == 200, f"cancel answered {response.status_code}")
        body = response.json()
        expect(body["action"] == "canceled", f"cancel did {body['action']}")
        carol.subscription = body["subscription"]
        return f"{body['message']} {self._access(carol, allowed=True)}"

    def ended_carol(self) -> str:
        carol = self.people["carol"]
        self._move_clock_to(carol.period_end + timedelta(minutes=1))
        return self._access(carol, allowed=False)

    # --- helpers -----------------------------------------------------------------------------

    def _subscribe(self) -> Subscriber:
        client = BillingClient(self.settings, on_exchange=self.on_exchange)
        bought = client.buy(DEMO_PLAN_ID)
        expect(bought.status_code == 201, f"POST /subscriptions answered {bought.status_code}")
        payment = bought.json()["payment"]
        result = PaymentPage(self.settings, payment["payment_url"], self.on_exchange).pay(CARD_OK)
        expect(result.status == "succeeded", f"the charge answered {result.status}")
        client.wait_for_payment(payment["id"], {"succeeded"})
        subscription = client.wait_for_subscription(
            bought.json()["subscription"]["id"], lambda s: s["status"] == "active"
        )
        expect(subscription["status"] == "active", f"subscription is {subscription['status']}")
        return Subscriber(client, subscription)

    @cached_property
    def _clock(self) -> StackClock:
        return StackClock(self.settings, self.on_exchange)

    def _move_clock_to(self, moment: datetime) -> None:
        self._clock.move_to(moment)

    def _move_by(self, delta: timedelta) -> None:
        self._clock.move_by(delta)

    def _mail(self) -> Mailbox:
        return Mailbox(self.settings, self.on_exchange)

    def _page(self, link: str) -> PaymentPage:
        return PaymentPage(self.settings, link.split("?")[0], self.on_exchange)

    def _access(self, subscriber: Subscriber, *, allowed: bool) -> str:
        response = subscriber.client.access(COVERED_FILM_ID)
        expect(response.status_code == 200, f"access answered {response.status_code}")
        body = response.json()
        expect(body["allowed"] is allowed, f"expected allowed={allowed}, got {body}")
        return f"allowed={body['allowed']} reason={body['reason']} until={body['until']}"


def starts_at(subscription: dict[str, Any], moment: datetime) -> bool:
    start = subscription.get("current_period_start")
    return start is not None and datetime.fromisoformat(start) == moment
