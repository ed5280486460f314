"""A real person's path: paying on the payment page in headless Chromium (Debian's), Allure steps
named after the scenario, a screenshot at each page."""

from __future__ import annotations

import allure
import pytest

from integration_tests.clients import (
    CARD_3DS,
    CARD_DECLINED_AT_CHARGE,
    CARD_OK,
    BillingClient,
)
from integration_tests.clients.stripe_side import StripeSide
from integration_tests.conftest import screenshot
from integration_tests.scenario import COVERED_FILM_ID, DEMO_PLAN_ID

pytestmark = allure.feature("Payment page in a browser")


@pytest.fixture
def buyer(stack, on_exchange) -> BillingClient:
    return BillingClient(stack, on_exchange=on_exchange)


def buy(buyer: BillingClient) -> dict:
    with allure.step("User asks to buy the plan"):
        response = buyer.buy(DEMO_PLAN_ID)
        assert response.status_code == 201, response.text
        payment = response.json()["payment"]
        assert payment["status"] == "pending"
        return payment


def open_page(page, payment: dict) -> None:
    with allure.step("User opens the payment link"):
        page.goto(payment["payment_url"])
        amount = page.locator("#amount")
        assert amount.get_attribute("data-amount") == str(payment["amount"])
        assert amount.get_attribute("data-currency") == payment["currency"].upper()
        assert page.locator("#plan-name").inner_text().strip()
        screenshot(page, "payment page")


def enter_card(page, number: str) -> None:
    with allure.step(f"User enters card {number[:4]} … {number[-4:]} and pays"):
        card = page.locator("#card-element")
        for field, value in (
            ("number", number),
            ("exp_month", "12"),
            ("exp_year", "34"),
            ("cvc", "123"),
            ("postal_code", "75001"),
        ):
            card.locator(f"input[placeholder='{field}']").fill(value)
        screenshot(page, "card entered")
        page.locator("#pay-button").click()


def authenticate(page, complete: bool) -> None:
    label = "Complete authentication" if complete else "Fail authentication"
    with allure.step(f"3-D Secure dialog: {label}"):
        button = page.get_by_role("button", name=label)
        button.wait_for(timeout=15_000)
        screenshot(page, "3-D Secure dialog")
        button.click()


def expect_success(page) -> None:
    with allure.step("The page says the payment succeeded"):
        page.locator("#success").wait_for(state="visible", timeout=20_000)
        screenshot(page, "success")


def expect_access(buyer: BillingClient, payment: dict, allowed: bool) -> None:
    wanted = {"succeeded"} if allowed else {"succeeded", "failed", "canceled"}
    with allure.step("Waiting for the payment to be confirmed by billing"):
        seen = buyer.wait_for_payment(payment["id"], wanted, timeout=20 if allowed else 3)
        if allowed:
            assert seen["status"] == "succeeded", seen
        else:
            assert seen["status"] != "succeeded", seen
    with allure.step(f"Checking the user {'may' if allowed else 'may not'} watch the film"):
        access = buyer.access(COVERED_FILM_ID).json()
        assert access["allowed"] is allowed, access


@allure.title("The page shows the price as people read it and links back to the cinema")
def test_page_shows_the_price_and_links_back_to_the_cinema(stack, page, buyer):
    payment = buy(buyer)
    open_page(page, payment)
    with allure.step("The amount reads as money: $9.99, not 999 usd"):
        assert payment["amount"] == 999 and payment["currency"] == "usd"
        assert page.locator("#amount").inner_text().strip() == "$9.99"
        assert "$9.99" in page.locator("#pay-button").inner_text()
    cinema = stack.values.get("BILLING_PAYMENT_RETURN_URL", "")
    with allure.step("'Back to the cinema' opens the cinema's page billing passed, not this page"):
        link = page.locator("#return-link")
        if not cinema:  # a stack with no cinema URL set shows no link at all
            assert link.count() == 0
            return
        href = link.get_attribute("href")
        assert href == cinema.replace("{payment_id}", payment["id"])
        assert "/pay/" not in href
        link.click()
        page.wait_for_url(href)
        screenshot(page, "the cinema's page")


@allure.title("Card 4242: paid on the page, the user may watch")
def test_card_payment_succeeds_and_grants_access(stack, page, buyer):
    payment = buy(buyer)
    open_page(page, payment)
    enter_card(page, CARD_OK)
    expect_success(page)
    expect_access(buyer, payment, allowed=True)
    stripe = StripeSide(stack).payment(payment["id"])
    assert len(stripe.succeeded_charges) == 1
    assert stripe.charged == payment["amount"]


@allure.title("3-D Secure card, authentication completed: paid")
def test_3ds_card_completed_is_charged(stack, page, buyer):
    payment = buy(buyer)
    open_page(page, payment)
    enter_card(page, CARD_3DS)
    authenticate(page, complete=True)  # saving the card
    authenticate(page, complete=True)  # the charge itself asks again, as Stripe's 3184 card does
    expect_success(page)
    expect_access(buyer, payment, allowed=True)
    assert len(StripeSide(stack).payment(payment["id"]).succeeded_charges) == 1


@allure.title("3-D Secure card, authentication failed: the page says so, nothing is charged")
def test_3ds_card_failed_is_not_charged(stack, page, buyer):
    payment = buy(buyer)
    open_page(page, payment)
    enter_card(page, CARD_3DS)
    authenticate(page, complete=False)
    with allure.step("The page explains the failure"):
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=15_000)
        assert "authentication" in error.inner_text().lower()
        screenshot(page, "authentication failed")
    assert page.locator("#success").is_hidden()
    expect_access(buyer, payment, allowed=False)
    assert StripeSide(stack).payment(payment["id"]).succeeded_charges == []


@allure.title("Declined card 0341, then 4242 on the same payment: exactly one charge")
def test_declined_card_then_retry_charges_once(stack, page, buyer):
    payment = buy(buyer)
    open_page(page, payment)
    enter_card(page, CARD_DECLINED_AT_CHARGE)
    with allure.step("The page shows the decline reason"):
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=15_000)
        assert "declined" in error.inner_text().lower()
        screenshot(page, "declined")
    enter_card(page, CARD_OK)
    expect_success(page)
    expect_access(buyer, payment, allowed=True)
    stripe = StripeSide(stack).payment(payment["id"])
    assert len(stripe.succeeded_charges) == 1, stripe.charges
    assert len([c for c in stripe.charges if c["status"] == "failed"]) == 1
    assert len(stripe.intents) == 1, "the retry must reuse the same PaymentIntent"


@allure.title("The payment page at phone width (390 px)")
def test_payment_page_fits_a_phone(stack, browser, buyer):
    payment = buy(buyer)
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    phone = context.new_page()
    try:
        phone.goto(payment["payment_url"])
        with allure.step("The page fits 390 px without sideways scrolling"):
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width} px wide"
            assert phone.locator("#pay-button").is_visible()
            screenshot(phone, "payment page, 390 px")
    finally:
        context.close()
