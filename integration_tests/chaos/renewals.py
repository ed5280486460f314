"""Subscribers' lives while the clock moves: periods end and billing's worker renews each
subscription with the saved card, off-session. Every choice from the subscriber's own Random:

* `keeps`: lets it renew with the card they paid with;
* `declines`: saves a card that declines at a charge (4000 0000 0000 0341) on the card-update
  page; at renewal billing emails "did not go through" (then retries on schedule, then a last
  reminder); after a few emails (or never) they follow the link and pay with another card;
* `needs_3ds`: saves a card that needs 3-D Secure (or paid with one): each renewal emails a link
  to confirm it, which most follow (authenticate) — some never do and their grace runs out;
* `cancels`: cancels at period end once the refund window is over, and half of them resume
  later (too late, at times: after the period ended);
* `refunds_renewal`: takes a renewal's money back as soon as its receipt arrives (a double click
  of three, at times).

At closing time every subscriber leaves (cancels what still renews, refunded when within the
refund window, as the cancel button does), so that a final move of the clock can end every
period and every payment deadline and the audit finds each payment final.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from integration_tests.chaos.clock import ClockDriver
from integration_tests.chaos.tally import Tally
from integration_tests.chaos.users import (
    Subscriber,
    at_once,
    patiently,
    pay_until_done,
    refund,
)
from integration_tests.clients import (
    CARD_3DS,
    CARD_DECLINED_AT_CHARGE,
    CARD_OK,
    PaymentPage,
    StackSettings,
    links_in,
)
from integration_tests.renewal_scenario import USERS_DOMAIN

# The demo plan's refund window (admin's load_demo_data): a cancel within it refunds instead.
REFUND_WINDOW = timedelta(days=14)
LIVES = {"keeps": 55, "declines": 14, "needs_3ds": 11, "cancels": 12, "refunds_renewal": 8}
PAYMENT_IN_TEXT = re.compile(r"Payment: ([0-9a-f-]{36})")

Message = dict[str, Any]


class Postman(threading.Thread):
    """Reads each new email once (`GET /messages?after=n`) and puts it in its subscriber's inbox."""

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(daemon=True, name="postman")
        self.mail = httpx.Client(base_url=settings["MAIL_URL"], timeout=10)
        self.inboxes: dict[str, queue.Queue[Message]] = {}
        self.last_seen = 0
        self._stopped = threading.Event()

    def inbox(self, user_id: str) -> queue.Queue[Message]:
        return self.inboxes.setdefault(f"{user_id}@{USERS_DOMAIN}", queue.Queue())

    def run(self) -> None:
        while not self._stopped.wait(0.5):
            try:
                answer = self.mail.get("/messages", params={"after": self.last_seen})
                messages = answer.json()["items"]
            except (httpx.HTTPError, ValueError):
                continue
            for message in messages:
                self.last_seen = max(self.last_seen, message["id"])
                for address in message["to"]:
                    if (inbox := self.inboxes.get(address.lower())) is not None:
                        inbox.put(message)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


@dataclass
class Stage:
    """What every subscriber's life plays on."""

    settings: StackSettings
    tally: Tally
    clock: ClockDriver
    postman: Postman
    closing: threading.Event = field(default_factory=threading.Event)

    def next_mail(self, inbox: queue.Queue[Message]) -> Message | None:
        """The subscriber's next email; None once the run is closing."""
        while not self.closing.is_set():
            try:
                return inbox.get(timeout=0.5)
            except queue.Empty:
                continue
        return None

    def count(self, what: str) -> None:
        self.tally.count("actions", what)


def live(stage: Stage, subscriber: Subscriber, inbox: queue.Queue[Message]) -> None:
    """A subscriber's life until closing time (a user who paid with a 3-D Secure card needs it at
    every renewal: that decides their life)."""
    rng = subscriber.rng
    plan = "needs_3ds"
    if subscriber.card != CARD_3DS:
        plan = rng.choices(list(LIVES), weights=list(LIVES.values()))[0]
    stage.count(f"life_{plan}")
    try:
        if plan == "declines":
            declines(stage, subscriber, inbox)
        elif plan == "needs_3ds":
            needs_3ds(stage, subscriber, inbox)
        elif plan == "cancels":
            cancels(stage, subscriber)
        elif plan == "refunds_renewal":
            refunds_renewal(stage, subscriber, inbox)
    except Exception:
        stage.tally.error_seen()


def declines(stage: Stage, subscriber: Subscriber, inbox: queue.Queue[Message]) -> None:
    rng = subscriber.rng
    if not save_card(stage, subscriber, CARD_DECLINED_AT_CHARGE):
        return
    emails_ignored = rng.choice([0, 0, 1, 2, None])  # None: never acts, grace runs out
    while (mail := stage.next_mail(inbox)) is not None:
        if "has ended" in mail["subject"]:
            stage.count("renewal_lapsed")
            return
        if "did not go through" not in mail["subject"] and "Last reminder" not in mail["subject"]:
            continue
        stage.count("renewal_declined_email")
        if emails_ignored is None or emails_ignored > 0:
            emails_ignored = None if emails_ignored is None else emails_ignored - 1
            continue
        time.sleep(rng.random() * 2)  # reading it
        link = next(url for url in links_in(mail) if "/card?t=" in url)
        page = PaymentPage(stage.settings, link.split("/card?")[0])
        opened = patiently(lambda: page.page.get(link))  # noqa: B023 - called at once
        if opened.status_code != 200:
            stage.count(f"card_link_answered_{opened.status_code}")
            continue
        result = pay_until_done(page, CARD_OK, rng, stage.tally)
        stage.count(f"renewal_new_card_{result.status}")
        if result.status == "succeeded":
            return  # the new card is saved: later renewals go through


def needs_3ds(stage: Stage, subscriber: Subscriber, inbox: queue.Queue[Message]) -> None:
    rng = subscriber.rng
    if subscriber.card != CARD_3DS and not save_card(stage, subscriber, CARD_3DS):
        return
    never_confirms = rng.random() < 0.2
    while (mail := stage.next_mail(inbox)) is not None:
        if "has ended" in mail["subject"]:
            stage.count("renewal_lapsed")
            return
        if not mail["subject"].startswith("Confirm your"):
            continue
        stage.count("renewal_authentication_email")
        if never_confirms:
            continue
        time.sleep(rng.random() * 2)
        link = next(url for url in links_in(mail) if "/authenticate?t=" in url)
        page = PaymentPage(stage.settings, link.split("/authenticate?")[0])
        for _ in range(4):  # a page that failed (a crashed pay_api) is tried again
            result = patiently(lambda: page.authenticate_renewal(link))  # noqa: B023
            if not result.status.startswith("http_5"):
                break
            time.sleep(1)
        stage.count(f"renewal_authenticated_{result.status}")


def cancels(stage: Stage, subscriber: Subscriber) -> None:
    """Cancel at period end after the refund window; half of them resume some days later."""
    rng = subscriber.rng
    subscription = wait_for_subscription(stage, subscriber, {"active"})
    if subscription is None:
        return
    start = datetime.fromisoformat(subscription["current_period_start"])
    after_window = start + REFUND_WINDOW + timedelta(days=1 + 5 * rng.random())
    if not stage.clock.wait_until(after_window, stage.closing):
        return
    clicks = 2 if rng.random() < 0.25 else 1
    answers = at_once(
        lambda _: patiently(lambda: subscriber.client.cancel(subscriber.subscription_id)), clicks
    )
    actions = {a.json().get("action", a.status_code) for a in answers if a.status_code == 200}
    stage.count(f"cancel_x{clicks}_{'_'.join(sorted(map(str, actions))) or 'refused'}")
    if "canceled" not in actions or rng.random() < 0.5:
        return
    later = stage.clock.now + timedelta(days=2 + 14 * rng.random())
    if not stage.clock.wait_until(later, stage.closing):
        return
    resumed = patiently(lambda: subscriber.client.resume(subscriber.subscription_id))
    stage.count("resumed" if resumed.status_code == 200 else f"resume_{resumed.status_code}")


def refunds_renewal(stage: Stage, subscriber: Subscriber, inbox: queue.Queue[Message]) -> None:
    rng = subscriber.rng
    while (mail := stage.next_mail(inbox)) is not None:
        if not mail["subject"].startswith("Receipt") or "renewed" not in mail["text"]:
            continue
        found = PAYMENT_IN_TEXT.search(mail["text"])
        if found is None:
            continue
        time.sleep(rng.random() * 2)
        clicks = 3 if rng.random() < 0.3 else 1
        stage.count(f"renewal_refund_x{clicks}")
        refund(subscriber.client, found.group(1), f"chaos-renewal-{found.group(1)}", clicks)
        return


def leave(stage: Stage, subscriber: Subscriber) -> None:
    """Closing time: cancel whatever still renews (a refund within the refund window)."""
    try:
        answer = patiently(lambda: subscriber.client.cancel(subscriber.subscription_id))
        outcome = answer.json().get("action") if answer.status_code == 200 else answer.status_code
        stage.count(f"left_{outcome}")
    except Exception:
        stage.tally.error_seen()


# --- helpers -------------------------------------------------------------------------------------


def save_card(stage: Stage, subscriber: Subscriber, card: str) -> bool:
    """Save `card` for the next renewals on the card-update page (a link billing hands out once
    the subscription is paid)."""
    for _ in range(8):
        try:
            link = patiently(lambda: subscriber.client.card_link(subscriber.subscription_id))
            if link.status_code == 200 and not link.json()["pays_renewal"]:
                url = link.json()["url"]
                page = PaymentPage(stage.settings, url.split("?")[0])
                saved = patiently(lambda: page.save_card(url, card))  # noqa: B023
                if saved.status == "saved":
                    stage.count("card_saved")
                    return True
        except httpx.HTTPError:
            pass
        if stage.closing.wait(1):
            break
    stage.count("card_not_saved")
    return False


def wait_for_subscription(
    stage: Stage, subscriber: Subscriber, statuses: set[str], timeout: float = 60
) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stage.closing.is_set():
        try:
            listed = patiently(lambda: subscriber.client.subscriptions())
            if listed.status_code == 200:
                for subscription in listed.json()["items"]:
                    if (
                        subscription["id"] == subscriber.subscription_id
                        and subscription["status"] in statuses
                    ):
                        return subscription
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return None
