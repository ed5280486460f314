"""Buying with a promo code: the server's price on the payment, pay_api and the ledger; the use
reserved at purchase, confirmed on success, released on failure or expiry, kept after a refund;
free (100%-off) purchases; refunds on the net; the limits under concurrency; renewals' prices."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from billing.payments.models import Payment
from billing.promotions import service as promotions
from billing.subscriptions.models import Subscription
from conftest import as_service, as_user
from test_billing_promotions import put_personal, put_promo, refusal

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def buy(billing, user, plan_id, code: str | None = None, **headers):
    body = {"plan_id": str(plan_id), **({"promo_code": code} if code is not None else {})}
    return await billing.client.post(
        "/api/v1/subscriptions", json=body, headers={**as_user(user), **headers}
    )


async def bought(billing, user, plan_id, code: str | None = None) -> dict:
    response = await buy(billing, user, plan_id, code)
    assert response.status_code == 201, response.text
    return response.json()


async def counters(billing, promo) -> tuple[int, dict[str, int]]:
    """The code's counter, and redemptions by status."""
    used = await billing.scalar(
        "SELECT times_redeemed FROM promo_codes WHERE id = :id", id=promo["id"]
    )
    by_status = {}
    for status in ("reserved", "confirmed", "released"):
        by_status[status] = await billing.count(
            "promo_redemptions", "promo_code_id = :id AND status = :s", id=promo["id"], s=status
        )
    return used, by_status


async def test_the_payment_carries_gross_discount_and_net_and_pay_api_is_asked_for_the_net(
    billing,
):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, percent_off=25)
    user = uuid.uuid4()
    payment = (await bought(billing, user, plan_id, promo["code"].lower()))["payment"]
    assert (payment["gross_amount"], payment["discount_amount"], payment["amount"]) == (
        1000,
        250,
        750,
    )
    assert payment["promo_code"] == promo["code"]
    (registration,) = [
        c.body
        for c in billing.fake.calls_to("POST", "/internal/v1/payments")
        if c.body["payment_id"] == payment["id"]
    ]
    assert registration["amount"] == 750
    assert await counters(billing, promo) == (1, {"reserved": 1, "confirmed": 0, "released": 0})

    paid = await billing.event(payment, "succeeded")
    assert paid.json() == {"applied": True}
    assert await counters(billing, promo) == (1, {"reserved": 0, "confirmed": 1, "released": 0})
    detail = await billing.client.get(
        f"/internal/v1/payments/{payment['id']}", headers=as_service("admin")
    )
    (charge,) = [row for row in detail.json()["ledger"] if row["kind"] == "charge"]
    assert (charge["gross_amount"], charge["discount_amount"], charge["amount"]) == (1000, 250, 750)
    # The emailed receipt and the user's payment view show the same three figures.
    receipt_email = await billing.scalar(
        "SELECT payload->>'text' FROM outbox WHERE topic = 'email'"
        " AND payload->>'payment_id' = :p AND payload->>'kind' = 'receipt'",
        p=payment["id"],
    )
    assert f"Price: $10.00\nDiscount ({promo['code']}): -$2.50\n" in receipt_email
    assert "Amount charged: $7.50" in receipt_email
    receipt = await billing.payment(user, payment["id"])
    assert (receipt["status"], receipt["gross_amount"], receipt["discount_amount"]) == (
        "succeeded",
        1000,
        250,
    )


async def test_without_a_code_gross_equals_net(billing):
    plan_id = await billing.put_plan(price_amount=999)
    payment = (await bought(billing, uuid.uuid4(), plan_id))["payment"]
    assert (payment["gross_amount"], payment["discount_amount"], payment["amount"]) == (999, 0, 999)
    assert payment["promo_code"] is None


async def test_a_refused_code_writes_nothing(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    expired = await put_promo(billing, valid_until="2020-01-01T00:00:00Z")
    before = await billing.table_counts()
    for code, expected in [("NOPE", "promo_code_unknown"), (expired["code"], "promo_code_expired")]:
        response = await buy(billing, uuid.uuid4(), plan_id, code)
        assert (response.status_code, response.json()["code"]) == (422, expected)
    assert await billing.table_counts() == before


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
async def test_a_failed_or_canceled_payment_gives_the_use_back(billing, outcome):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, max_redemptions=1)
    user = uuid.uuid4()
    payment = (await bought(billing, user, plan_id, promo["code"]))["payment"]
    assert await refusal(billing, uuid.uuid4(), plan_id, promo["code"]) == "promo_code_exhausted"
    assert (await billing.event(payment, outcome)).json() == {"applied": True}
    assert await counters(billing, promo) == (0, {"reserved": 0, "confirmed": 0, "released": 1})
    # The use is back: another user (or the same one) may take it.
    assert (await bought(billing, uuid.uuid4(), plan_id, promo["code"]))["payment"]["amount"] == 800


async def test_an_expired_payment_gives_the_use_back(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, max_redemptions=1)
    user = uuid.uuid4()
    payment = (await bought(billing, user, plan_id, promo["code"]))["payment"]
    deadline = await billing.scalar(
        "SELECT expires_at FROM payments WHERE id = :p", p=payment["id"]
    )
    await billing.work(now=deadline + timedelta(seconds=1))
    assert (await billing.payment(user, payment["id"]))["status"] == "expired"
    assert await counters(billing, promo) == (0, {"reserved": 0, "confirmed": 0, "released": 1})
    # A late repeat of the news changes nothing: the use is not given back twice.
    await billing.event(payment, "canceled")
    assert (await counters(billing, promo))[0] == 0


async def test_charged_after_release_takes_the_use_again(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, max_redemptions=1)
    payment = (await bought(billing, uuid.uuid4(), plan_id, promo["code"]))["payment"]
    await billing.event(payment, "canceled")
    assert (await counters(billing, promo))[0] == 0
    # Stripe charged after all (a cancel that lost the race): the money was taken with the discount.
    assert (await billing.event(payment, "succeeded")).json() == {"applied": True}
    assert await counters(billing, promo) == (1, {"reserved": 0, "confirmed": 1, "released": 0})


async def test_a_refund_does_not_give_the_use_back_and_is_computed_on_the_net(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, percent_off=30, max_redemptions=5, max_per_user=1)
    user = uuid.uuid4()
    purchase = await bought(billing, user, plan_id, promo["code"])
    payment = purchase["payment"]
    await billing.event(payment, "succeeded")

    def admin_refund(amount, key):
        return billing.client.post(
            f"/internal/v1/payments/{payment['id']}/refunds",
            json={"amount": amount, "reason": "goodwill", "end_subscription": False},
            headers={**as_service("admin"), "Idempotency-Key": key},
        )

    too_much = await admin_refund(701, "too-much")  # the gross was 1000; 700 was paid
    assert (too_much.status_code, too_much.json()["code"]) == (409, "refund_exceeds_remaining")
    assert too_much.json()["details"]["remaining"] == 700
    part = await admin_refund(200, "part")
    assert part.status_code == 201 and part.json()["amount"] == 200
    rest = await admin_refund(None, "rest")
    assert rest.json()["amount"] == 500  # what is left of the net
    assert await counters(billing, promo) == (1, {"reserved": 0, "confirmed": 1, "released": 0})
    # The user cannot use it again (one per user), refund or not.
    other_plan = await billing.put_plan(price_amount=1000)
    assert await refusal(billing, user, other_plan, promo["code"]) == "promo_code_already_used"


async def test_a_user_refund_returns_the_net(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, percent_off=40)
    user = uuid.uuid4()
    purchase = await bought(billing, user, plan_id, promo["code"])
    await billing.event(purchase["payment"], "succeeded")
    answer = await billing.client.post(
        f"/api/v1/subscriptions/{purchase['subscription']['id']}/cancel", headers=as_user(user)
    )
    assert answer.json()["action"] == "refunded"
    assert answer.json()["refund_amount"] == {"amount": 600, "currency": "usd"}


async def test_a_free_purchase_charges_nothing_and_activates_with_a_ledger_row(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    film = uuid.uuid4()
    await billing.client.put(
        f"/internal/v1/films/{film}", json={"title": "Free film"}, headers=as_service("etl")
    )
    await billing.put_plan(plan_id=plan_id, price_amount=1000, film_ids=[str(film)])
    promo = await put_promo(billing, percent_off=100, duration="once")
    user = uuid.uuid4()
    registrations_before = len(billing.fake.calls_to("POST", "/internal/v1/payments"))
    purchase = await bought(billing, user, plan_id, promo["code"])
    payment, subscription = purchase["payment"], purchase["subscription"]
    assert (payment["status"], payment["amount"], payment["gross_amount"]) == ("succeeded", 0, 1000)
    assert payment["payment_url"] is None
    assert subscription["status"] == "active"
    assert len(billing.fake.calls_to("POST", "/internal/v1/payments")) == registrations_before
    assert (
        await billing.count(
            "ledger_entries",
            "payment_id = :p AND kind = 'charge' AND amount = 0 AND gross_amount = 1000"
            " AND discount_amount = 1000",
            p=payment["id"],
        )
        == 1
    )
    assert await counters(billing, promo) == (1, {"reserved": 0, "confirmed": 1, "released": 0})
    assert (await billing.access(user, film))["allowed"] is True
    # Nothing to refund: a cancel stops the renewal instead, and a manager's refund is refused.
    cancel = await billing.client.post(
        f"/api/v1/subscriptions/{subscription['id']}/cancel", headers=as_user(user)
    )
    assert cancel.json()["action"] == "canceled"
    refund = await billing.client.post(
        f"/internal/v1/payments/{payment['id']}/refunds",
        json={"amount": None, "reason": "x", "end_subscription": False},
        headers={**as_service("admin"), "Idempotency-Key": "free"},
    )
    assert (refund.status_code, refund.json()["code"]) == (409, "payment_not_refundable")


async def test_exhausted_at_purchase(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, max_redemptions=1)
    await bought(billing, uuid.uuid4(), plan_id, promo["code"])
    before = await billing.table_counts()
    response = await buy(billing, uuid.uuid4(), plan_id, promo["code"])
    assert (response.status_code, response.json()["code"]) == (422, "promo_code_exhausted")
    assert await billing.table_counts() == before


async def test_thirty_concurrent_buyers_and_ten_uses_make_exactly_ten_redemptions(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    promo = await put_promo(billing, max_redemptions=10)
    responses = await asyncio.gather(
        *(buy(billing, uuid.uuid4(), plan_id, promo["code"]) for _ in range(30))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [422] * 20
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"promo_code_exhausted"}
    assert await counters(billing, promo) == (10, {"reserved": 10, "confirmed": 0, "released": 0})
    assert await billing.count("payments", "promo_code = :c", c=promo["code"]) == 10


async def test_one_user_buying_two_plans_at_once_with_a_one_per_user_code_gets_one(billing):
    plans = [await billing.put_plan(price_amount=1000) for _ in range(5)]
    promo = await put_promo(billing, max_per_user=1)
    user = uuid.uuid4()
    responses = await asyncio.gather(*(buy(billing, user, p, promo["code"]) for p in plans))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [422] * 4
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {
        "promo_code_already_used"
    }
    assert await counters(billing, promo) == (1, {"reserved": 1, "confirmed": 0, "released": 0})


async def test_first_purchase_only_at_purchase(billing):
    plan_id, other = await billing.put_plan(), await billing.put_plan()
    promo = await put_promo(billing, first_purchase_only=True, max_per_user=None)
    user = uuid.uuid4()
    purchase = await bought(billing, user, plan_id, promo["code"])
    await billing.event(purchase["payment"], "succeeded")
    response = await buy(billing, user, other, promo["code"])
    assert (response.status_code, response.json()["code"]) == (
        422,
        "promo_code_first_purchase_only",
    )


async def test_a_personal_discount_applies_at_purchase_without_a_code(billing):
    plan_id = await billing.put_plan(price_amount=1000)
    user = uuid.uuid4()
    await put_personal(billing, user, percent_off=10)
    payment = (await bought(billing, user, plan_id))["payment"]
    assert (payment["amount"], payment["discount_amount"], payment["promo_code"]) == (
        900,
        100,
        None,
    )


USD_1000 = {"gross": 1000, "currency": "usd"}


def renewal_paid(subscription: Subscription, price, start) -> Payment:
    """A renewal payment as the renewal job records one that succeeded (issue 10 builds the job)."""
    return Payment(
        id=uuid.uuid4(),
        user_id=subscription.user_id,
        subscription_id=subscription.id,
        plan_id=subscription.plan_id,
        kind="renewal",
        status="succeeded",
        amount=price.net,
        gross_amount=price.gross,
        discount_amount=price.discount,
        currency=price.currency,
        refunded_amount=0,
        expires_at=start,
        next_check_at=start,
        period_start=start,
        period_end=start + timedelta(days=30),
    )


async def _subscription(billing, subscription_id) -> Subscription:
    async with billing.resources.sessionmaker() as session:
        return await session.get(Subscription, uuid.UUID(subscription_id))


@pytest.mark.parametrize(
    ("terms", "nets"),
    [
        ({"duration": "once"}, [750, 1000, 1000, 1000]),
        ({"duration": "repeating", "duration_periods": 3}, [750, 750, 750, 1000]),
        ({"duration": "forever"}, [750, 750, 750, 750]),
    ],
)
async def test_period_price_for_renewals(billing, terms, nets):
    """The function the renewal job calls: the code lasts as many paid periods as it says."""
    plan_id = await billing.put_plan(price_amount=1000, period_unit="day", period_count=30)
    promo = await put_promo(billing, percent_off=25, **terms)
    user = uuid.uuid4()
    purchase = await bought(billing, user, plan_id, promo["code"])
    await billing.event(purchase["payment"], "succeeded")
    subscription = await _subscription(billing, purchase["subscription"]["id"])
    start = subscription.current_period_start
    got = []
    async with billing.resources.sessionmaker() as session:
        for number in range(1, 5):
            # Periods 2.. are priced before their payment exists, at their start.
            at = start + timedelta(days=30 * (number - 1))
            charge = await promotions.period_price(
                session=session, subscription=subscription, period_start=at, **USD_1000
            )
            got.append(charge.price.net)
            assert charge.price.gross == 1000
            assert charge.promo_code == (promo["code"] if charge.price.discount else None)
            if number > 1:
                session.add(renewal_paid(subscription, charge.price, at))
                await session.flush()
        await session.rollback()
    assert got == nets


async def test_period_price_uses_a_personal_discount_while_it_is_valid(billing):
    plan_id = await billing.put_plan(price_amount=1000, period_unit="day", period_count=30)
    user = uuid.uuid4()
    purchase = await bought(billing, user, plan_id)
    await billing.event(purchase["payment"], "succeeded")
    subscription = await _subscription(billing, purchase["subscription"]["id"])
    until = subscription.current_period_start + timedelta(days=45)
    await put_personal(billing, user, percent_off=20, valid_until=until.isoformat())
    async with billing.resources.sessionmaker() as session:
        second = await promotions.period_price(
            session=session,
            subscription=subscription,
            period_start=subscription.current_period_start + timedelta(days=30),
            **USD_1000,
        )
        third = await promotions.period_price(
            session=session,
            subscription=subscription,
            period_start=subscription.current_period_start + timedelta(days=60),
            **USD_1000,
        )
    assert (second.price.net, second.promo_code, third.price.net) == (800, None, 1000)


@pytest.mark.parametrize(
    ("terms", "renewal_nets"),
    [
        ({"percent_off": 25, "duration": "repeating", "duration_periods": 2}, [750, 1000]),
        ({"percent_off": 100, "duration": "forever"}, [0, 0]),
    ],
)
async def test_the_renewal_job_applies_the_code_for_as_long_as_it_lasts(
    billing, terms, renewal_nets
):
    """Through the real renewal job: each renewal's payment carries gross, discount and net; a
    fully discounted renewal succeeds without pay_api and still extends the subscription."""
    plan_id = await billing.put_plan(price_amount=1000, period_unit="day", period_count=30)
    promo = await put_promo(billing, **terms)
    user = uuid.uuid4()
    purchase = await bought(billing, user, plan_id, promo["code"])
    if purchase["payment"]["status"] != "succeeded":
        await billing.event(purchase["payment"], "succeeded")
    subscription_id = purchase["subscription"]["id"]
    got = []
    for _ in renewal_nets:
        end = await billing.scalar(
            "SELECT current_period_end FROM subscriptions WHERE id = :s", s=subscription_id
        )
        registrations = len(billing.fake.calls_to("POST", "/internal/v1/payments"))
        done = await billing.work(now=end - timedelta(minutes=30))
        assert -1 not in done.values(), done
        renewal = await billing.scalar(
            "SELECT row_to_json(p) FROM payments p WHERE subscription_id = :s"
            " AND kind = 'renewal' AND period_start = :start",
            s=subscription_id,
            start=end,
        )
        assert renewal["status"] == "succeeded", renewal
        assert renewal["gross_amount"] - renewal["discount_amount"] == renewal["amount"]
        got.append(renewal["amount"])
        if renewal["amount"] == 0:
            assert len(billing.fake.calls_to("POST", "/internal/v1/payments")) == registrations
            assert billing.fake.charges_sent(renewal["id"]) == []  # nothing to charge
    assert got == renewal_nets
    status = await billing.scalar(
        "SELECT status FROM subscriptions WHERE id = :s", s=subscription_id
    )
    assert status == "active"


async def test_the_renewal_job_prices_each_renewal_of_a_batch_on_its_own(billing):
    """Renewals written together: a user's personal discount applies to theirs only; a user with
    a discount that ended, or none, pays the plan's price."""
    plan_id = await billing.put_plan(price_amount=1000, period_unit="day", period_count=30)
    discounted, lapsed, plain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await put_personal(billing, discounted, percent_off=20)
    subscriptions = {}
    for user in (discounted, lapsed, plain):
        purchase = await bought(billing, user, plan_id)
        if purchase["payment"]["status"] != "succeeded":
            await billing.event(purchase["payment"], "succeeded")
        subscriptions[user] = purchase["subscription"]["id"]
    end = await billing.scalar(
        "SELECT max(current_period_end) FROM subscriptions WHERE id = ANY(:s)",
        s=[uuid.UUID(s) for s in subscriptions.values()],
    )
    until = (end - timedelta(days=1)).isoformat()  # over before the renewal's period starts
    await put_personal(billing, lapsed, percent_off=50, valid_until=until)
    done = await billing.work(now=end - timedelta(minutes=30))
    assert -1 not in done.values(), done
    amounts = {}
    for user, subscription_id in subscriptions.items():
        amounts[user] = await billing.scalar(
            "SELECT json_build_array(amount, discount_amount) FROM payments"
            " WHERE subscription_id = :s AND kind = 'renewal'",
            s=uuid.UUID(subscription_id),
        )
    assert amounts == {discounted: [800, 200], lapsed: [1000, 0], plain: [1000, 0]}
