"""Exactly once under faults: every payment completes and none is taken twice.

Each scenario injects a real fault into the running system (a SIGKILLed process, a stopped
service, a lost or forged webhook, a dropped connection, cut database sessions) and then checks
the promises on both sides — billing's view and Stripe's (localstripe) — with `audit.problems`.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import allure
import httpx
import pytest

from integration_tests.clients import CARD_3DS, CARD_OK, BillingClient, PaymentPage
from integration_tests.faults.proxy import Fault, Rule
from integration_tests.faults.tools import Faults
from integration_tests.scenario import COVERED_FILM_ID, DEMO_PLAN_ID

pytestmark = [pytest.mark.faults, allure.feature("Exactly once under faults")]

FAILPOINTS = ("charge.before_confirm", "charge.after_confirm", "outbox.after_commit")


def run_concurrently(count: int, call):
    barrier = threading.Barrier(count)

    def one(index):
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


# --- 1, 2: double submits ------------------------------------------------------------------------


@allure.title("50 concurrent purchases with one Idempotency-Key: one payment, one answer")
def test_same_idempotency_key_fifty_times(stack, faults):
    user = BillingClient(stack)
    key = f"double-click-{uuid.uuid4()}"
    with allure.step("50 identical purchase requests at once"):
        answers = run_concurrently(50, lambda _: user.buy(DEMO_PLAN_ID, idempotency_key=key))
    with allure.step("All got the same answer, naming one payment"):
        assert {a.status_code for a in answers} == {201}, [a.text for a in answers[:3]]
        assert len({a.text for a in answers}) == 1
        payment = answers[0].json()["payment"]
        assert user.payments().json()["total"] == 1
    with allure.step("The same key with another body is refused and creates nothing"):
        other = user.http.post(
            "/api/v1/subscriptions",
            json={"plan_id": str(uuid.uuid4())},
            headers={"Idempotency-Key": key},
        )
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"
        assert user.payments().json()["total"] == 1
    with allure.step("Paying it makes exactly one PaymentIntent and one charge"):
        assert PaymentPage(stack, payment["payment_url"]).pay(CARD_OK).status == "succeeded"
        assert faults.settle_and_audit(payment["id"]) == []
        stripe = faults.stripe.payment(payment["id"])
        assert len(stripe.intents) == 1 and len(stripe.succeeded_charges) == 1


@allure.title("50 concurrent purchases of one plan with different keys: one open payment")
def test_fifty_purchases_different_keys(stack, faults):
    user = BillingClient(stack)
    answers = run_concurrently(50, lambda i: user.buy(DEMO_PLAN_ID, idempotency_key=f"k-{i}"))
    assert {a.status_code for a in answers} <= {200, 201}, {a.text for a in answers}
    payment_ids = {a.json()["payment"]["id"] for a in answers}
    assert len(payment_ids) == 1
    assert user.payments().json()["total"] == 1


# --- 3: pay_api killed at each point of the charge path ------------------------------------------


@pytest.mark.parametrize("failpoint", FAILPOINTS)
@allure.title("pay_api SIGKILLed at a point of the charge path, then the user retries")
def test_pay_api_killed_during_charge(stack, faults, failpoint):
    allure.dynamic.title(f"pay_api killed at {failpoint}: one charge, billing equal to Stripe")
    user, payment = faults.bought()
    page = PaymentPage(stack, payment["payment_url"])
    with allure.step(f"Arm the crash at {failpoint} and pay"):
        armed = faults.arm(failpoint)
        first = page.pay(CARD_OK)
        assert not armed.exists(), "the crash point was never reached"
        allure.attach(repr(first), name="what the page got")
    with allure.step("The user tries again on the same page (gunicorn restarted the worker)"):
        deadline = time.monotonic() + 20
        second = page.pay(CARD_OK)
        while second.status != "succeeded" and time.monotonic() < deadline:
            time.sleep(1)
            second = page.pay(CARD_OK)
        assert second.status == "succeeded", second.body
    with allure.step("After the reconciler: final, one charge, equal to Stripe"):
        assert faults.settle_and_audit(payment["id"]) == []
        assert len(faults.stripe.payment(payment["id"]).succeeded_charges) == 1


@pytest.mark.parametrize("failpoint", ["charge.after_confirm", "outbox.after_commit"])
@allure.title("pay_api SIGKILLed after Stripe charged; nobody retries: the system finishes it")
def test_pay_api_killed_after_charge_without_retry(stack, faults, failpoint):
    allure.dynamic.title(f"pay_api killed at {failpoint}, no retry: billing learns the charge")
    user, payment = faults.bought()
    faults.arm(failpoint)
    PaymentPage(stack, payment["payment_url"]).pay(CARD_OK)
    assert len(faults.stripe.payment(payment["id"]).succeeded_charges) == 1
    assert faults.settle_and_audit(payment["id"]) == []
    assert faults.billing_payment(payment["id"])["status"] == "succeeded"


# --- 4: billing down while the news arrives ------------------------------------------------------


@allure.title("billing down while the payment succeeds: it learns it later from the outbox")
def test_billing_down_when_payment_succeeds(stack, faults):
    user, payment = faults.bought()
    with allure.step("Stop billing (API and worker)"):
        faults.stack("stop", "billing", *faults.billing_workers)
    try:
        with allure.step("The user pays; Stripe and pay_api know, billing cannot be told"):
            assert PaymentPage(stack, payment["payment_url"]).pay(CARD_OK).status == "succeeded"
            time.sleep(2)  # the webhook arrives at pay_api meanwhile
    finally:
        with allure.step("Start billing again"):
            faults.stack("start", "billing", *faults.billing_workers)
    with allure.step("billing learns the success; nothing is lost"):
        assert user.wait_for_payment(payment["id"], {"succeeded"})["status"] == "succeeded"
        assert faults.settle_and_audit(payment["id"]) == []


# --- 5: the webhook lost, and the page closed ----------------------------------------------------


@allure.title("Webhook lost and the page closed after 3-D Secure: the reconciler finishes it")
def test_lost_webhook_is_recovered_by_the_reconciler(stack, faults):
    user, payment = faults.bought()
    faults.lose_webhooks()
    with allure.step("The user authenticates at Stripe, then closes the page before it syncs"):
        result = PaymentPage(stack, payment["payment_url"]).pay(CARD_3DS, sync=False)
        assert result.status == "authenticated", result.body
        assert len(faults.stripe.payment(payment["id"]).succeeded_charges) == 1
    with allure.step("No webhook, no page: billing still reaches succeeded, as Stripe says"):
        assert faults.settle_and_audit(payment["id"], timeout=60) == []
        assert faults.billing_payment(payment["id"])["status"] == "succeeded"


# --- 6, 7, 10: webhooks repeated, reordered, forged ----------------------------------------------


def succeeded_intent(faults: Faults, payment_id: str) -> dict:
    intent_id = faults.billing_payment(payment_id)["stripe_payment_intent_id"]
    return faults.intent(intent_id)


@allure.title("The same webhook twice, then ten times at once: one transition, one ledger row")
def test_duplicate_webhooks(stack, faults):
    faults.lose_webhooks()  # only our copies arrive
    user, payment = faults.paid()
    before = faults.billing_payment(payment["id"])
    body, signature = faults.signed_webhook(
        "payment_intent.succeeded", succeeded_intent(faults, payment["id"])
    )
    with allure.step("Deliver it twice, then ten times concurrently"):
        assert faults.post_webhook(body, signature).status_code == 200
        assert faults.post_webhook(body, signature).status_code == 200
        answers = run_concurrently(10, lambda _: faults.post_webhook(body, signature))
        assert {a.status_code for a in answers} == {200}
    with allure.step("Nothing moved: one charge in billing's ledger, one at Stripe"):
        after = faults.billing_payment(payment["id"])
        assert after["status"] == "succeeded"
        assert after["updated_at"] == before["updated_at"]
        assert [e["kind"] for e in after["ledger"]] == ["charge"]
        assert faults.settle_and_audit(payment["id"]) == []


@allure.title("Events out of order: a failure after the success never moves the payment back")
def test_out_of_order_events(stack, faults):
    faults.lose_webhooks()
    user, payment = faults.paid()
    intent = succeeded_intent(faults, payment["id"])
    stale = {**intent, "status": "requires_payment_method"}
    with allure.step("A payment_failed and a processing event arrive after the success"):
        for event_type, obj in (
            ("payment_intent.payment_failed", stale),
            ("payment_intent.processing", {**intent, "status": "processing"}),
        ):
            body, signature = faults.signed_webhook(event_type, obj)
            assert faults.post_webhook(body, signature).status_code == 200
    with allure.step("An old 'pending' notification reaches billing after the success"):
        late = billing_event(stack, payment, status="pending")
        assert late.status_code == 200 and late.json()["applied"] is False
    with allure.step("billing still says succeeded, as Stripe does"):
        assert faults.billing_payment(payment["id"])["status"] == "succeeded"
        assert user.access(COVERED_FILM_ID).json()["allowed"] is True
        assert faults.settle_and_audit(payment["id"]) == []


@allure.title("A refund's news before the success's: the end state is still Stripe's")
def test_refund_news_before_success_news(stack, faults):
    faults.lose_webhooks()
    user, payment = faults.bought()
    with allure.step("billing's reconciler stopped; pay_api dies right after Stripe charged"):
        faults.stack("stop", *faults.billing_workers)
        faults.arm("charge.after_confirm")
        PaymentPage(stack, payment["payment_url"]).pay(CARD_OK)
    try:
        at_stripe = faults.stripe.payment(payment["id"])
        assert len(at_stripe.succeeded_charges) == 1
        intent_id = at_stripe.intents[0]["id"]
        with allure.step("The charge is refunded at Stripe directly (the Dashboard)"):
            refunded = faults.stripe.http.post("/v1/refunds", data={"payment_intent": intent_id})
            assert refunded.status_code == 200, refunded.text
        charge = faults.stripe.http.get(f"/v1/charges/{at_stripe.charges[0]['id']}").json()
        with allure.step("Webhooks arrive in the wrong order: charge.refunded, then succeeded"):
            for event_type, obj in (
                ("charge.refunded", charge),
                ("payment_intent.succeeded", faults.intent(intent_id)),
            ):
                body, signature = faults.signed_webhook(event_type, obj)
                assert faults.post_webhook(body, signature).status_code == 200
    finally:
        faults.stack("start", *faults.billing_workers)
    with allure.step("billing ends refunded, as Stripe does; the user may not watch"):
        assert faults.settle_and_audit(payment["id"], timeout=60) == []
        seen = faults.billing_payment(payment["id"])
        assert seen["status"] == "refunded" and seen["refunded_amount"] == payment["amount"]
        assert user.access(COVERED_FILM_ID).json()["allowed"] is False


def billing_event(stack, payment: dict, status: str) -> httpx.Response:
    from integration_tests.clients.tokens import service_token

    return httpx.post(
        f"{stack.billing_url}/internal/v1/payment-events",
        headers={"Authorization": f"Bearer {service_token(stack, 'pay_api', 'billing')}"},
        json={
            "event_id": str(uuid.uuid4()),
            "object": "payment",
            "payment_id": payment["id"],
            "refund_id": None,
            "status": status,
            "amount": payment["amount"],
            "currency": payment["currency"],
            "amount_refunded": 0,
            "failure_code": None,
            "failure_message": None,
            "stripe_id": None,
            "occurred_at": "2000-01-01T00:00:00+00:00",
        },
        timeout=10,
    )


@allure.title("Forged, stale and replayed webhooks are refused or ignored")
def test_bad_webhooks_change_nothing(stack, faults):
    faults.lose_webhooks()
    user, payment = faults.bought()
    intent = {
        "id": "pi_forged",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": payment["amount"],
        "currency": payment["currency"],
        "metadata": {"payment_id": payment["id"]},
    }
    body, signature = faults.signed_webhook("payment_intent.succeeded", intent)
    with allure.step("A bad signature: 400, nothing stored"):
        forged = signature[:-4] + ("0000" if not signature.endswith("0000") else "1111")
        answer = faults.post_webhook(body, forged)
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_signature"
    with allure.step("A correctly signed event from 6 minutes ago: 400"):
        old_body, old_signature = faults.signed_webhook(
            "payment_intent.succeeded", intent, timestamp=int(time.time()) - 360
        )
        assert faults.post_webhook(old_body, old_signature).status_code == 400
    with allure.step("The payment did not move"):
        time.sleep(1)
        assert faults.billing_payment(payment["id"])["status"] == "pending"
    with allure.step("A replayed genuine event is applied once"):
        paid_user, paid = faults.paid()
        genuine_body, genuine_signature = faults.signed_webhook(
            "payment_intent.succeeded", succeeded_intent(faults, paid["id"])
        )
        for _ in range(3):
            assert faults.post_webhook(genuine_body, genuine_signature).status_code == 200
        assert [e["kind"] for e in faults.billing_payment(paid["id"])["ledger"]] == ["charge"]


# --- 8: Stripe unreachable, slow or failing ------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.HTTP_500, Fault.RESET_BEFORE_UPSTREAM, Fault.RESET_AFTER_UPSTREAM, Fault.DELAY],
    ids=lambda fault: fault.value,
)
@allure.title("Stripe fails on the confirmation: retried, never two charges")
def test_stripe_faults_on_confirm(stack, faults, fault_proxy, fault):
    allure.dynamic.title(f"Stripe {fault.value} on the confirmation: one charge at most")
    user, payment = faults.bought()
    page = PaymentPage(stack, payment["payment_url"])
    fault_proxy.add(Rule("POST", r"/v1/payment_intents/\w+/confirm", fault, times=3, delay=25))
    with allure.step(f"The charge meets {fault.value}"):
        first = page.pay(CARD_OK)
        allure.attach(repr(first), name="what the page got")
    fault_proxy.clear()
    with allure.step("The user retries until the page says paid"):
        deadline = time.monotonic() + 40
        result = first
        while result.status != "succeeded" and time.monotonic() < deadline:
            time.sleep(1)
            result = page.pay(CARD_OK)
        assert result.status == "succeeded", result.body
    with allure.step("One charge at Stripe, billing equal to it"):
        assert faults.settle_and_audit(payment["id"]) == []
        assert len(faults.stripe.payment(payment["id"]).succeeded_charges) == 1


@allure.title("Stripe's answer to the charge lost, nobody retries: unknown, then reconciled")
def test_lost_stripe_answer_is_reconciled(stack, faults, fault_proxy):
    faults.lose_webhooks()
    user, payment = faults.bought()
    page = PaymentPage(stack, payment["payment_url"])
    # billing's reconciler stopped while the user pays: it could otherwise ask pay_api while the
    # confirmation waits on Stripe, and settle the payment before `unknown` ever shows.
    faults.stack("stop", *faults.billing_workers)
    try:
        with allure.step("Every try of the SDK loses Stripe's answer to the confirmation"):
            # the SDK retries with the same Idempotency-Key; each answer is lost
            fault_proxy.add(
                Rule(
                    "POST", r"/v1/payment_intents/\w+/confirm", Fault.RESET_AFTER_UPSTREAM, times=10
                )
            )
            result = page.pay(CARD_OK)
        with allure.step("The page says we are checking with the bank; Stripe charged once"):
            assert result.status == "processing", result.body
            assert "do not pay again" in result.body.get("message", "").lower(), result.body
            assert page.status()["status"] == "unknown"
            assert len(faults.stripe.payment(payment["id"]).succeeded_charges) == 1
        with allure.step("billing shows unknown (pay_api told it) and no access yet"):
            seen = faults.billing_payment(payment["id"])
            deadline = time.monotonic() + 20
            while seen["status"] != "unknown" and time.monotonic() < deadline:
                time.sleep(0.2)
                seen = faults.billing_payment(payment["id"])
            assert seen["status"] == "unknown", seen
            assert user.access(COVERED_FILM_ID).json()["allowed"] is False
    finally:
        faults.stack("start", *faults.billing_workers)
    with allure.step("The reconciler asks Stripe: succeeded, as Stripe says"):
        assert faults.settle_and_audit(payment["id"], timeout=60) == []
        assert faults.billing_payment(payment["id"])["status"] == "succeeded"
        assert len(faults.stripe.payment(payment["id"]).succeeded_charges) == 1


# --- 9: the abandoned payment ---------------------------------------------------------------------


@allure.title("An abandoned payment expires: canceled at Stripe, a late confirmation cannot charge")
def test_abandoned_payment_expires(stack, faults):
    with allure.step("billing with a 10-second payment deadline"):
        faults.stack("stop", "billing")
        faults.stack("start", "billing", BILLING_PAYMENT_TTL_SECONDS="10")
    try:
        user, payment = faults.bought()
        with allure.step("The user saves a 3-D Secure card and walks away at the dialog"):
            result = PaymentPage(stack, payment["payment_url"]).pay(CARD_3DS, authenticate=None)
            assert result.status == "requires_action", result.body
            secret = result.body["client_secret"]
    finally:
        faults.stack("stop", "billing")
        faults.stack("start", "billing")
    with allure.step("Past the deadline: expired in billing, canceled at Stripe"):
        seen = faults.settle(payment["id"], timeout=40)
        assert seen["status"] == "expired", seen
        assert faults.settle_and_audit(payment["id"]) == []
        intent_id = secret.split("_secret_")[0]
        assert faults.intent(intent_id)["status"] == "canceled"
    with allure.step("A late authentication cannot charge"):
        late = faults.stripe.http.post(
            f"/v1/payment_intents/{intent_id}/_authenticate",
            params={"success": "true"},
            json={"client_secret": secret},
        )
        assert late.status_code >= 400
        assert faults.stripe.payment(payment["id"]).succeeded_charges == []
    with allure.step("The subscription is incomplete_expired and the user can buy again"):
        subscriptions = user.subscriptions().json()["items"]
        assert [s["status"] for s in subscriptions] == ["incomplete_expired"]
        again = user.buy(DEMO_PLAN_ID)
        assert again.status_code == 201 and again.json()["payment"]["id"] != payment["id"]


# --- 11: refunds racing a crash --------------------------------------------------------------------


@allure.title("Concurrent refunds while pay_api is killed: never more than the charge")
def test_concurrent_refunds_with_pay_api_killed(stack, faults):
    user, payment = faults.paid()
    faults.arm("refund.after_stripe")
    with allure.step("10 refund requests at once, pay_api dies after Stripe refunded"):
        answers = run_concurrently(10, lambda i: user.refund(payment["id"], f"refund-{i}"))
        allure.attach(repr([(a.status_code, a.text[:120]) for a in answers]), name="answers")
    with allure.step("After the reconciler: refunded once, equal to Stripe"):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = faults.billing_payment(payment["id"])
            if seen["status"] == "refunded" and all(
                r["status"] in {"succeeded", "failed", "canceled"} for r in seen["refunds"]
            ):
                break
            time.sleep(0.5)
        stripe = faults.stripe.payment(payment["id"])
        assert stripe.refunded <= stripe.charged
        assert faults.settle_and_audit(payment["id"]) == []
        assert faults.billing_payment(payment["id"])["status"] == "refunded"


# --- 12: PostgreSQL connections cut ---------------------------------------------------------------


@allure.title("billing's database connections cut mid-transaction: no half state")
def test_database_connections_terminated(stack, faults):
    users = [BillingClient(stack) for _ in range(12)]
    stop = threading.Event()
    cuts = []

    def cutter():
        while not stop.is_set():
            cuts.append(faults.terminate_billing_connections())
            time.sleep(0.05)

    def buy_twice(user):
        answers = [user.buy(DEMO_PLAN_ID, idempotency_key=f"cut-{user.user_id}") for _ in range(2)]
        return [(a.status_code, a.headers.get("content-type", "")) for a in answers]

    with allure.step("Purchases while every billing connection is terminated every 50 ms"):
        thread = threading.Thread(target=cutter)
        thread.start()
        try:
            with ThreadPoolExecutor(max_workers=6) as pool:
                outcomes = list(pool.map(buy_twice, users))
        finally:
            stop.set()
            thread.join()
        allure.attach(repr(outcomes), name="answers")
        assert sum(cuts) > 0, "no connection was cut"
        for answers in outcomes:
            for status, content_type in answers:
                assert status in {200, 201} or status >= 500, answers
                assert content_type.startswith("application/json")
    with allure.step("Afterwards each user has at most one open payment, and it can be paid"):
        for user in users:
            retried = user.buy(DEMO_PLAN_ID, idempotency_key=f"cut-{user.user_id}")
            assert retried.status_code in {200, 201}, retried.text
            payments = user.payments().json()["items"]
            assert len(payments) == 1, payments
        user = users[0]
        payment = user.payments().json()["items"][0]
        assert PaymentPage(stack, payment["payment_url"]).pay(CARD_OK).status == "succeeded"
        assert faults.settle_and_audit(payment["id"]) == []
