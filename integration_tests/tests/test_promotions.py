"""Promo codes against the running system: made in the admin, copied by etl, limits held by
billing's database under concurrent purchases, the discount on the payment page and at Stripe."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import allure
import pytest

from integration_tests.clients import CARD_OK, BillingClient, BillingInternalClient, catalog
from integration_tests.clients.stripe_side import StripeSide
from integration_tests.conftest import screenshot
from integration_tests.scenario import DEMO_PLAN_ID, Scenario
from integration_tests.tests.test_browser_payments import enter_card, expect_success

pytestmark = allure.feature("Promo codes")


@pytest.fixture(scope="module")
def demo_catalog(stack):
    Scenario(stack).seed()


def _code(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


def _at_once(calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


@allure.title("100 users buy at once with a code that has 10 uses left: exactly 10 redemptions")
def test_hundred_concurrent_buyers_take_exactly_the_ten_uses_left(stack, demo_catalog):
    code = _code("TEN")
    with allure.step("A manager makes a code of 10 uses, 20% off; etl copies it"):
        promo_id = catalog.promo_code(
            stack, code, "--percent-off", "20", "--max-redemptions", "10", "--max-per-user", "1"
        )
    buyers = [BillingClient(stack) for _ in range(100)]
    with allure.step("100 different users buy the plan with it at the same moment"):
        responses = _at_once([lambda b=b: b.buy(DEMO_PLAN_ID, promo_code=code) for b in buyers])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [422] * 90, statuses
    refusals = {r.json()["code"] for r in responses if r.status_code == 422}
    assert refusals == {"promo_code_exhausted"}
    paid = [r.json()["payment"] for r in responses if r.status_code == 201]
    assert {(p["gross_amount"], p["discount_amount"], p["amount"]) for p in paid} == {
        (999, 200, 799)
    }
    with allure.step("billing's redemptions of the code: 10, one per payment"):
        listing = BillingInternalClient(stack, "admin").promo_redemptions(promo_id).json()
        assert (listing["times_redeemed"], listing["total"]) == (10, 10)
        assert {r["payment_id"] for r in listing["items"]} == {p["id"] for p in paid}
        assert {r["status"] for r in listing["items"]} == {"reserved"}
    with allure.step("A late buyer is told the code is used up"):
        late = BillingClient(stack).price(DEMO_PLAN_ID, promo_code=code)
        assert (late.status_code, late.json()["code"]) == (422, "promo_code_exhausted")


@allure.title("One user buys twice at once with a one-per-user code: one redemption")
def test_the_same_user_buying_twice_at_once_redeems_once(stack, demo_catalog):
    second_plan = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
    catalog.plan(stack, second_plan, "Everything monthly", 1499)
    code = _code("ONCE")
    promo_id = catalog.promo_code(stack, code, "--percent-off", "10", "--max-per-user", "1")
    user = BillingClient(stack)
    with allure.step("The same user buys two plans with the code at the same moment"):
        responses = _at_once(
            [
                lambda: user.buy(DEMO_PLAN_ID, promo_code=code),
                lambda: user.buy(second_plan, promo_code=code),
            ]
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 422], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 422)
    assert refused.json()["code"] == "promo_code_already_used"
    with allure.step("The same user double-clicks one plan with the code"):
        again = _at_once([lambda: user.buy(second_plan, promo_code=code) for _ in range(2)])
        assert {r.status_code for r in again} <= {200, 422}
    listing = BillingInternalClient(stack, "admin").promo_redemptions(promo_id).json()
    assert (listing["times_redeemed"], listing["total"]) == (1, 1)
    assert listing["items"][0]["user_id"] == user.user_id


@allure.title(
    "The payment page shows the price, the discount and the total; Stripe charges the net"
)
def test_payment_page_shows_the_discount_and_stripe_charges_the_net(stack, page, demo_catalog):
    code = _code("PAGE")
    catalog.promo_code(stack, code, "--percent-off", "25", "--max-per-user", "1")
    buyer = BillingClient(stack)
    with allure.step(f"User previews the price with {code}"):
        preview = buyer.price(DEMO_PLAN_ID, promo_code=code.lower()).json()
        assert (preview["gross"], preview["discount"], preview["net"]) == (999, 250, 749)
    with allure.step("User buys with the code"):
        response = buyer.buy(DEMO_PLAN_ID, promo_code=code.lower())
        assert response.status_code == 201, response.text
        payment = response.json()["payment"]
        assert (payment["gross_amount"], payment["discount_amount"], payment["amount"]) == (
            999,
            250,
            749,
        )
    with allure.step("User opens the payment link: price, discount and total"):
        page.goto(payment["payment_url"])
        assert page.locator("#gross-amount").inner_text() == "$9.99"
        assert page.locator("#discount-amount").inner_text() == "−$2.50"
        assert page.locator("#promo-code").inner_text() == code
        assert page.locator("#amount").get_attribute("data-amount") == "749"
        assert page.locator("#amount").inner_text() == "$7.49"
        screenshot(page, "payment page with a discount")
    enter_card(page, CARD_OK)
    expect_success(page)
    with allure.step("Stripe charged the net; billing's ledger and receipt agree"):
        paid = buyer.wait_for_payment(payment["id"], {"succeeded"}, timeout=30)
        assert paid["status"] == "succeeded", paid
        assert StripeSide(stack).payment(payment["id"]).charged == 749
        detail = BillingInternalClient(stack, "admin").http.get(
            f"/internal/v1/payments/{payment['id']}"
        )
        (charge,) = [row for row in detail.json()["ledger"] if row["kind"] == "charge"]
        assert (charge["gross_amount"], charge["discount_amount"], charge["amount"]) == (
            999,
            250,
            749,
        )


@allure.title("100% off: active at once, nothing charged at Stripe, a ledger row of 0")
def test_a_free_purchase_needs_no_payment_page(stack, demo_catalog):
    code = _code("FREE")
    catalog.promo_code(stack, code, "--percent-off", "100", "--max-per-user", "1")
    buyer = BillingClient(stack)
    response = buyer.buy(DEMO_PLAN_ID, promo_code=code)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["payment"]["status"], body["payment"]["amount"]) == ("succeeded", 0)
    assert body["payment"]["payment_url"] is None
    assert body["subscription"]["status"] == "active"
    assert StripeSide(stack).payment(body["payment"]["id"]).intents == []
