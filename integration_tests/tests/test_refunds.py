"""Refunds against the running system, checked at Stripe too: never more than was paid."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import allure
import pytest

from integration_tests.clients import BillingInternalClient
from integration_tests.faults.tools import Faults

pytestmark = allure.feature("Refunds")


@pytest.fixture
def faults(stack, on_exchange):
    return Faults(stack, on_exchange=on_exchange)


@allure.title("20 concurrent refund requests for one payment: one refund at Stripe and in billing")
def test_twenty_concurrent_refunds_make_one(stack, faults):
    user, payment = faults.paid()
    barrier = threading.Barrier(20)

    def refund(index: int):
        barrier.wait()
        return user.refund(payment["id"], idempotency_key=f"tap-{index}")

    with allure.step("The user taps refund 20 times at once, each with its own key"):
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(refund, range(20)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(201) == 1, [a.text for a in answers if a.status_code != 409]
        assert set(statuses) == {201, 409}
        refused = {a.json()["code"] for a in answers if a.status_code == 409}
        assert refused <= {"payment_already_refunded", "payment_not_refundable"}, refused
    with allure.step("One refund of the full amount, in billing and at Stripe"):
        assert faults.settle_and_audit(payment["id"]) == []
        seen = faults.billing_payment(payment["id"])
        assert seen["status"] == "refunded"
        assert [r["amount"] for r in seen["refunds"]] == [payment["amount"]]
        assert len(faults.stripe.payment(payment["id"]).refunds) == 1


@allure.title("A partial refund, then a full one: only the remainder; more is refused")
def test_partial_then_full_refund_returns_only_the_remainder(stack, faults, on_exchange):
    manager = BillingInternalClient(stack, "admin", on_exchange=on_exchange)
    user, payment = faults.paid()
    with allure.step("The manager refunds 2.50 of 9.99"):
        partial = manager.refund(payment["id"], 250, "two days missed", end_subscription=False)
        assert partial.status_code == 201, partial.text
    with allure.step("A refund above what remains is refused and changes nothing"):
        too_much = manager.refund(payment["id"], 800, "too much", end_subscription=False)
        assert too_much.status_code == 409
        assert too_much.json()["code"] == "refund_exceeds_remaining"
        assert faults.billing_payment(payment["id"])["refunded_amount"] == 250
    with allure.step("A full refund returns only the remaining 7.49"):
        rest = manager.refund(payment["id"], None, "ends", end_subscription=True)
        assert rest.status_code == 201, rest.text
        assert rest.json()["amount"] == payment["amount"] - 250
    with allure.step("Stripe holds two refunds adding up to the charge; billing agrees"):
        assert faults.settle_and_audit(payment["id"]) == []
        stripe = faults.stripe.payment(payment["id"])
        assert sorted(r["amount"] for r in stripe.refunds) == [250, payment["amount"] - 250]
        assert faults.billing_payment(payment["id"])["status"] == "refunded"


@allure.title("Someone else's payment cannot be refunded (404), nor an unpaid one (409)")
def test_refund_of_foreign_or_unpaid_payment_is_refused(stack, faults):
    owner, paid = faults.paid()
    stranger, unpaid = faults.bought()
    foreign = stranger.refund(paid["id"], idempotency_key=str(uuid.uuid4()))
    assert foreign.status_code == 404 and foreign.json()["code"] == "payment_not_found"
    not_paid = stranger.refund(unpaid["id"], idempotency_key=str(uuid.uuid4()))
    assert not_paid.status_code == 409 and not_paid.json()["code"] == "payment_not_refundable"
    assert faults.billing_payment(paid["id"])["refunds"] == []
    assert faults.stripe.payment(paid["id"]).refunds == []
