"""Renewals under faults: each renewal is charged once and billing ends equal to Stripe.

Each scenario subscribes a user to the day plan, moves the stack's clock to the renewal (billing's
test clock, never a sleep) and breaks it for real: pay_api SIGKILLed around Stripe's charge,
billing SIGKILLed while the charge is at Stripe, two worker copies inside one charge, pay_api's
answer to billing lost, the user canceling while Stripe charges, the emailed links used while the
worker retries. Requests are held at the proxies (`Fault.HOLD`) to put one side of a race inside
the other in the order the test names. Every scenario ends with `audit.renewal_problems` empty — at
most one renewal payment, one PaymentIntent and one charge per period, paid periods that follow
each other, billing's payments equal to Stripe's, the customer charged only for them — and with
the renewal extended from the old end exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import allure
import pytest

from integration_tests.clients import CARD_3DS, CARD_DECLINED_AT_CHARGE, CARD_OK, PaymentPage
from integration_tests.clients.payment_page import PaymentResult
from integration_tests.faults.proxy import Fault, FaultProxy, Rule
from integration_tests.faults.renewals import (
    CHARGES,
    CONFIRM,
    DAY_PLAN_NAME,
    TWO_DAY_PLAN_ID,
    Renewals,
    Subscriber,
    confirm_path,
    day_plans,
    wait,
    worker_env,
)
from integration_tests.faults.tools import Faults
from integration_tests.scenario import COVERED_FILM_ID

# After every other test: they move the clock (a day or two each, see faults/renewals.py).
pytestmark = [pytest.mark.faults, pytest.mark.moves_clock, allure.feature("Renewals under faults")]

HOLD_SECONDS = 15  # the most a request is held (below pay_api's Stripe timeout, 20 s)


@pytest.fixture(scope="module")
def workers_proxy(stack):
    """For this module billing's workers reach pay_api through a proxy of their own."""
    proxy = FaultProxy(upstream_port=int(stack["PAY_API_PORT"])).start()
    tools = Faults(stack)
    day_plans(stack)
    tools.stack("stop", *tools.billing_workers)
    tools.stack("start", *tools.billing_workers, **worker_env(proxy))
    yield proxy
    proxy.clear()
    tools.stack("stop", *tools.billing_workers)
    tools.stack("start", *tools.billing_workers)


@pytest.fixture
def renewals(faults, workers_proxy, on_exchange):
    tools = Renewals(faults, workers_proxy, on_exchange)
    yield tools
    workers_proxy.clear()
    tools.start_workers()  # after a test that stopped or killed them
    tools.end_all()


def assert_renewed_once(renewals: Renewals, subscriber: Subscriber, status: str = "active"):
    """Renewed from the old end by one period; billing equal to Stripe; the renewal payment has
    one PaymentIntent and one successful charge. The renewal payment."""
    renewed = renewals.wait_renewed(subscriber)
    assert renewals.renewed_once(renewed, subscriber), renewed
    assert renewed["status"] == status, renewed
    assert renewals.settle_and_audit(subscriber) == []
    renewal = renewals.renewal(subscriber)
    assert renewal is not None and renewal["status"] == "succeeded", renewal
    at_stripe = renewals.at_stripe(subscriber)[renewal["id"]]
    assert len(at_stripe.intents) == 1, at_stripe.intents
    assert len(at_stripe.succeeded_charges) == 1, at_stripe.charges
    return renewal


def held_at(proxy: FaultProxy, method: str, path: str, body_contains: str = "") -> Rule:
    """Hold the next matching request at the proxy (until released, HOLD_SECONDS at most)."""
    return proxy.add(
        Rule(method, path, Fault.HOLD, times=1, delay=HOLD_SECONDS, body_contains=body_contains)
    )


def reached(rule: Rule, timeout: float = 60) -> bool:
    """Whether a request the rule matches reached its proxy (since the rule was added)."""
    return bool(wait(lambda: rule.fired, timeout))


def retry_inside_the_page(
    faults: Faults, step: str, page_call: Callable[[], PaymentResult], page_held: Rule, retry: Rule
) -> PaymentResult:
    """The page's call runs until its request to Stripe is held (pay_api holds the payment's row
    lock meanwhile); the worker's held retry then goes on to pay_api and waits for that lock;
    then Stripe answers the page. What the page got."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        with allure.step(step):
            answer = pool.submit(page_call)
            assert reached(page_held), "the page's request never reached Stripe"
        with allure.step("The worker's retry reaches pay_api and waits for the payment's lock"):
            retry.release()
            assert wait(faults.pay_api_lock_waiters, 10), "the retry never waited for the lock"
        with allure.step("Stripe answers the page"):
            page_held.release()
            return answer.result()


def retry_now(faults: Faults, subscriber: Subscriber) -> None:
    """A manager's "Retry renewal now" (the worker charges it at its next pass)."""
    answer = faults.billing_admin.http.post(
        f"/internal/v1/subscriptions/{subscriber.subscription_id}/retry-renewal",
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert answer.status_code == 200, answer.text


# --- pay_api killed before / after Stripe charged a renewal ---------------------------------------

# how many confirmations of the renewal's intent reach Stripe: killed before it, the one sent
# after the restart; after it, the first and maybe a second (Stripe refuses it: already
# succeeded) unless Stripe's webhook settled the payment first; after the commit, only the first
CONFIRMATIONS = {
    "charge.before_confirm": {1},
    "charge.after_confirm": {1, 2},
    "outbox.after_commit": {1},
}


@pytest.mark.parametrize("failpoint", sorted(CONFIRMATIONS))
@allure.title("pay_api SIGKILLed in a renewal's charge: billing asks again, one charge")
def test_pay_api_killed_during_renewal(renewals, faults, fault_proxy, failpoint):
    allure.dynamic.title(f"pay_api killed at {failpoint} in a renewal: renewed once, one charge")
    subscriber = renewals.subscribe()
    with allure.step(f"Arm the crash at {failpoint} for this user; the clock to the renewal"):
        armed = faults.arm(failpoint, subject=subscriber.user_id)
        renewals.move_to_renewal(subscriber)
    with allure.step("The worker charges the renewal and pay_api dies there"):
        assert wait(lambda: not armed.exists(), 60), "the crash point was never reached"
    with allure.step("billing asks again with the same attempt: renewed from the old end, once"):
        renewal = assert_renewed_once(renewals, subscriber)
        assert renewal["charge_attempts"] <= 1, renewal
    with allure.step("Stripe got no confirmation that could charge twice"):
        confirms = fault_proxy.requests("POST", confirm_path(renewal["stripe_payment_intent_id"]))
        assert len(confirms) in CONFIRMATIONS[failpoint], confirms


# --- billing killed mid-renewal ----------------------------------------------------------------


@allure.title("billing SIGKILLed while its renewal charge is at Stripe: renewed once on restart")
def test_billing_killed_mid_renewal(renewals, faults, fault_proxy):
    subscriber = renewals.subscribe()
    (customer,) = renewals.customers(subscriber)
    held = held_at(fault_proxy, "POST", CONFIRM)
    renewals.move_to_renewal(subscriber)
    with allure.step("The worker charges; pay_api's confirmation is held at Stripe"):
        assert reached(held), "the renewal was never confirmed"
    with allure.step("billing SIGKILLed: every API copy and every worker copy"):
        faults.stack("kill", "billing", *faults.billing_workers)
    try:
        with allure.step("Stripe charges meanwhile; pay_api cannot tell billing"):
            held.release()
            charged = wait(lambda: len(renewals.customer_charges(customer)) == 2, 30)
            assert charged, "Stripe never charged the renewal"
    finally:
        with allure.step("billing starts again; the clock passes the dead worker's lease"):
            faults.stack("start", "billing")
            renewals.start_workers()
            renewals.move_past_leases()
    with allure.step("Renewed from the old end once; one intent, one charge, equal to Stripe"):
        assert_renewed_once(renewals, subscriber)


# --- two worker copies -------------------------------------------------------------------------


@allure.title("Two worker copies inside one renewal charge at once: one confirmation, one charge")
def test_two_worker_copies_charge_one_renewal_at_once(renewals, faults, fault_proxy):
    subscriber = renewals.subscribe()
    held = held_at(fault_proxy, "POST", CONFIRM)
    renewals.move_to_renewal(subscriber)
    with allure.step("One copy charges; pay_api's confirmation is held at Stripe"):
        assert reached(held), "the renewal was never confirmed"
        renewal = renewals.wait_for_renewal(subscriber)
        asking = renewals.workers_proxy.requests("POST", CHARGES, renewal["id"])
        assert len(asking) == 1, asking
    with allure.step("Its lease runs out while it is inside pay_api: the other copy charges"):
        faults.stall_lease(renewal["id"])
        asking = renewals.workers_proxy.wait_for(
            "POST", CHARGES, count=2, body_contains=renewal["id"]
        )
        assert len(asking) == 2, "the other copy never charged the renewal"
        assert wait(faults.pay_api_lock_waiters, 10), "it never waited for the first one"
    with allure.step("Stripe answers; pay_api answers both copies, the second confirms nothing"):
        held.release()
        renewal = assert_renewed_once(renewals, subscriber)
        assert renewal["charge_attempts"] == 1, renewal  # both copies sent attempt 1
        confirms = fault_proxy.requests("POST", confirm_path(renewal["stripe_payment_intent_id"]))
        assert len(confirms) == 1, confirms
    with allure.step("Both copies applied pay_api's answer to the same renewal"):
        copies = {
            name
            for name in ("billing-worker-1", "billing-worker-2")
            for record in faults.log_records(name, "renewal attempt")
            if record.get("payment_id") == renewal["id"]
        }
        assert copies == {"billing-worker-1", "billing-worker-2"}, copies


@allure.title("Both worker copies start at once on the same due renewals: each renewed once")
def test_worker_copies_start_together_on_due_renewals(renewals):
    with allure.step("No worker runs while three users subscribe and their renewals fall due"):
        renewals.stop_workers()
        subscribers = [renewals.subscribe() for _ in range(3)]
        renewals.move_to_renewal(*subscribers)
    with allure.step("Both copies start at the same moment and find the same due renewals"):
        renewals.start_workers()
    for subscriber in subscribers:
        with allure.step(f"User {subscriber.user_id}: renewed once, one intent, one charge"):
            assert_renewed_once(renewals, subscriber)


# --- pay_api's answer lost -------------------------------------------------------------------


@allure.title("pay_api's answer to a renewal charge lost after Stripe charged: one charge")
def test_answer_to_renewal_charge_lost(renewals, fault_proxy):
    subscriber = renewals.subscribe()
    lost = renewals.workers_proxy.add(Rule("POST", CHARGES, Fault.RESET_AFTER_UPSTREAM, times=1))
    with allure.step("The clock to the renewal: pay_api charges, its answer to billing is lost"):
        renewals.move_to_renewal(subscriber)
        assert wait(lambda: lost.fired, 60), "the worker never charged"
    with allure.step("billing learns it (asking again, or pay_api's event): renewed once"):
        renewal = assert_renewed_once(renewals, subscriber)
    with allure.step("One confirmation reached Stripe: asking again confirmed nothing"):
        assert renewal["charge_attempts"] <= 1, renewal
        confirms = fault_proxy.requests("POST", confirm_path(renewal["stripe_payment_intent_id"]))
        assert len(confirms) == 1, confirms


# --- the user cancels while the renewal succeeds ------------------------------------------------


@allure.title("The user cancels while Stripe charges the renewal: the paid day is honored")
def test_renewal_succeeds_while_the_user_cancels(renewals, fault_proxy):
    subscriber = renewals.subscribe()
    held = held_at(fault_proxy, "POST", CONFIRM)
    renewals.move_to_renewal(subscriber)
    with allure.step("The renewal's confirmation is held at Stripe"):
        assert reached(held), "the renewal was never confirmed"
    with allure.step("The user cancels meanwhile (no refund window: canceled at period end)"):
        answer = subscriber.user.cancel(subscriber.subscription_id)
        assert answer.status_code == 200, answer.text
        assert answer.json()["action"] == "canceled", answer.json()
    with allure.step("Stripe charges: the paid period is theirs, the subscription stays canceled"):
        held.release()
        assert_renewed_once(renewals, subscriber, status="canceled")
        assert renewals.subscription(subscriber)["auto_renew"] is False
        assert subscriber.user.access(COVERED_FILM_ID).json()["allowed"] is True
    with allure.step("After the paid period access stops and nothing more is charged"):
        renewals.clock.move_to(subscriber.old_end + subscriber.period + renewals.lead)
        ended = renewals.wait_subscription(subscriber, lambda s: s["status"] == "expired")
        assert ended["status"] == "expired", ended
        assert subscriber.user.access(COVERED_FILM_ID).json()["allowed"] is False
        assert [p["kind"] for p in renewals.payments(subscriber)] == ["renewal", "first"]
        assert renewals.settle_and_audit(subscriber) == []


# --- the emailed links used while the worker retries ----------------------------------------------


@allure.title("The 3-D Secure link confirmed while the worker retries: one intent, one charge")
def test_authentication_link_used_while_the_worker_retries(renewals, faults, fault_proxy):
    subscriber = renewals.subscribe(card=CARD_3DS)
    with allure.step("Card 4000 0027 6000 3184 needs the cardholder: past_due, a link emailed"):
        renewals.move_to_renewal(subscriber)
        past_due = renewals.wait_subscription(subscriber, lambda s: s["status"] == "past_due")
        assert past_due["last_decline_code"] == "authentication_required", past_due
        link = renewals.email(subscriber, f"Confirm your {DAY_PLAN_NAME}", "/authenticate?t=")
        renewal = renewals.wait_for_renewal(subscriber)
        intent = f"/v1/payment_intents/{renewal['stripe_payment_intent_id']}"
    with allure.step("pay_api looks at the intent again (the reconciler): nothing new"):
        looks = len(fault_proxy.requests("GET", intent))
        assert len(fault_proxy.wait_for("GET", intent, count=looks + 1)) > looks
    with allure.step("A manager retries now: it still waits for the cardholder, no retry planned"):
        retry_now(faults, subscriber)
        assert wait(lambda: renewals.renewal(subscriber)["charge_attempts"] == 2, 30)
        waiting = renewals.subscription(subscriber)
        assert waiting["last_decline_code"] == "authentication_required", waiting
        assert waiting["renewal"]["next_retry_at"] is None, waiting
    faults.lose_webhooks()  # from here only the page tells pay_api what Stripe did
    page = PaymentPage(faults.settings, link.split("/authenticate?")[0], renewals.on_exchange)
    retried = held_at(renewals.workers_proxy, "POST", CHARGES, renewal["id"])
    with allure.step("The manager retries again: the worker's retry is on its way to pay_api"):
        retry_now(faults, subscriber)
        assert reached(retried), "the worker never retried"
    with allure.step("The user follows the emailed link and completes 3-D Secure at Stripe"):
        authenticated = page.authenticate_renewal(link, sync=False)
        assert authenticated.status == "authenticated", authenticated.body
    synced = retry_inside_the_page(
        faults,
        "The page syncs: pay_api reads Stripe with the payment's row locked",
        page.sync,
        held_at(fault_proxy, "GET", intent),
        retried,
    )
    assert synced.status == "succeeded", synced.body
    with allure.step("Renewed once; one PaymentIntent, one charge; no retry confirmed anything"):
        assert_renewed_once(renewals, subscriber)
        assert wait(lambda: renewals.renewal(subscriber)["charge_attempts"] == 3, 30)
        assert len(fault_proxy.requests("POST", f"{intent}/confirm")) == 1


@allure.title("The card link paid while the automatic retry runs: one intent, one charge")
def test_card_link_used_while_the_automatic_retry_runs(renewals, faults, fault_proxy):
    subscriber = renewals.subscribe(plan_id=TWO_DAY_PLAN_ID)  # the retry falls within the period
    with allure.step("The saved card becomes 4000 0000 0000 0341 (declines at a charge)"):
        link = subscriber.user.card_link(subscriber.subscription_id).json()["url"]
        page = PaymentPage(faults.settings, link.split("?")[0], renewals.on_exchange)
        assert page.save_card(link, CARD_DECLINED_AT_CHARGE).status == "saved"
    with allure.step("The renewal is declined: past_due, a retry scheduled, the card link emailed"):
        renewals.move_to_renewal(subscriber)
        past_due = renewals.wait_subscription(subscriber, lambda s: s["status"] == "past_due")
        retry_at = past_due["renewal"]["next_retry_at"]
        assert retry_at is not None, past_due
        card_link = renewals.email(subscriber, "did not go through", "/card?t=")
        renewal = renewals.wait_for_renewal(subscriber)
        confirm = confirm_path(renewal["stripe_payment_intent_id"])
    retried = held_at(renewals.workers_proxy, "POST", CHARGES, renewal["id"])
    with allure.step("The clock reaches the automatic retry: on its way to pay_api"):
        renewals.clock.move_to(datetime.fromisoformat(retry_at))
        assert reached(retried), "the automatic retry never ran"
    card_page = PaymentPage(faults.settings, card_link.split("/card?")[0], renewals.on_exchange)
    paid = retry_inside_the_page(
        faults,
        "The user pays on the card page with 4242: pay_api confirms with the row locked",
        lambda: card_page.pay(CARD_OK),
        held_at(fault_proxy, "POST", confirm),
        retried,
    )
    assert paid.status == "succeeded", paid.body
    with allure.step("Renewed from the old end once; one intent, one charge; no third confirm"):
        renewal = assert_renewed_once(renewals, subscriber)
        assert wait(lambda: renewals.renewal(subscriber)["charge_attempts"] == 2, 30)
        assert len(fault_proxy.requests("POST", confirm)) == 2
