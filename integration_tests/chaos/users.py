"""A user buying the plan: double clicks, declined cards, 3-D Secure, abandoned payments, refunds
(some asked three times at once). Every choice is drawn from the user's own `Random(seed, index)`.

A user who ends up holding a paid subscription is a `Subscriber`: `renewals.py` plays the rest of
their life while the clock moves."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from integration_tests.chaos.tally import Tally
from integration_tests.clients import (
    CARD_3DS,
    CARD_DECLINED_AT_CHARGE,
    CARD_OK,
    BillingClient,
    PaymentPage,
    StackSettings,
)
from integration_tests.clients.payment_page import PaymentResult
from integration_tests.scenario import DEMO_PLAN_ID

Answer = TypeVar("Answer")


@dataclass
class Subscriber:
    """A user whose first payment went through and who did not take it back."""

    index: int
    rng: random.Random
    client: BillingClient
    subscription_id: str
    card: str  # the card saved for renewals: the last one they paid with

    @property
    def user_id(self) -> str:
        return self.client.user_id


def patiently(call: Callable[[], Answer], attempts: int = 10) -> Answer:
    """A person retries when the site does not answer (a service restarting, a cut connection, or
    nginx saying that no copy of the service answers)."""
    for attempt in range(attempts):
        try:
            answer = call()
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
        else:
            if not _no_copy_answers(answer) or attempt == attempts - 1:
                return answer
        time.sleep(0.5 + attempt * 0.5)
    raise AssertionError("unreachable")


def _no_copy_answers(answer: Any) -> bool:
    """nginx's answer when every copy of the service is down (deploy/nginx/cinema.conf.template)."""
    if isinstance(answer, httpx.Response) and answer.status_code == 503:
        try:
            return answer.json().get("code") == "service_unavailable"
        except ValueError:
            return False
    if isinstance(answer, PaymentResult):
        return answer.status == "http_503"
    return isinstance(answer, dict) and answer.get("code") == "service_unavailable"


def at_once(call: Callable[[int], Answer], clicks: int) -> list[Answer]:
    """`clicks` concurrent calls (a double click, or three): call(i) for i in 0..clicks-1."""
    if clicks == 1:
        return [call(0)]
    with ThreadPoolExecutor(clicks) as pool:
        return list(pool.map(call, range(clicks)))


def pay_until_done(
    page: PaymentPage, card: str, rng: random.Random, tally: Tally, tries: int = 6
) -> PaymentResult:
    """Pay; on an error page click pay again (a second click too, at times)."""
    result = page.pay(card)
    for _ in range(tries):
        if result.status == "succeeded":
            break
        time.sleep(0.5 + rng.random())
        if rng.random() < 0.3:
            tally.count("actions", "double_click_pay")
            results = at_once(lambda _: page.pay(card), 2)
            result = next((r for r in results if r.status == "succeeded"), results[0])
        else:
            result = page.pay(card)
    return result


def refund(user: BillingClient, payment_id: str, key: str, clicks: int) -> None:
    """The user asks for their money back, `clicks` times at once (each click its own key)."""
    at_once(lambda i: patiently(lambda: user.refund(payment_id, f"{key}-refund-{i}")), clicks)


def play_user(settings: StackSettings, seed: int, index: int, tally: Tally) -> Subscriber | None:
    """One user's purchase, every choice drawn from `Random(seed, index)`; the subscriber if they
    hold a paid subscription at the end."""
    rng = random.Random(f"{seed}-{index}")
    user = BillingClient(settings)
    key = f"chaos-{seed}-{index}"
    clicks = 2 if rng.random() < 0.25 else 1  # a double click on "buy"
    if clicks == 2:
        tally.count("actions", "double_click_buy")
    answers = at_once(lambda _: patiently(lambda: user.buy(DEMO_PLAN_ID, key)), clicks)
    bought = next((a for a in answers if a.status_code in (200, 201)), None)
    for _ in range(5):  # the gateway or billing may have been down: the user tries again
        if bought is not None:
            break
        time.sleep(1)
        answer = patiently(lambda: user.buy(DEMO_PLAN_ID, key))
        bought = answer if answer.status_code in (200, 201) else None
    if bought is None:
        tally.count("actions", "could_not_buy")
        return None
    payment = bought.json()["payment"]
    page = PaymentPage(settings, payment["payment_url"])

    roll = rng.random()
    if roll < 0.10:
        tally.count("actions", "abandoned")
        return None  # never pays: expires
    if roll < 0.25:
        tally.count("actions", "declined_card")
        page.pay(CARD_DECLINED_AT_CHARGE)
        if rng.random() < 0.4:
            tally.count("actions", "gave_up_after_decline")
            return None
    if roll > 0.90:
        tally.count("actions", "3ds_card")
        card = CARD_3DS
    else:
        card = CARD_OK
    result = pay_until_done(page, card, rng, tally)
    tally.count("actions", f"pay_{result.status}")
    if result.status != "succeeded":
        return None
    if rng.random() < 0.3:
        seen = patiently(lambda: user.wait_for_payment(payment["id"], {"succeeded"}, timeout=20))
        if seen.get("status") != "succeeded":
            return None
        clicks = 3 if rng.random() < 0.3 else 1
        tally.count("actions", f"refund_x{clicks}")
        refund(user, payment["id"], key, clicks)
        return None
    return Subscriber(index, rng, user, bought.json()["subscription"]["id"], card)
