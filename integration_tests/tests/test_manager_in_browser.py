"""A manager in the Django admin, in a real browser: makes a plan that users can then buy, finds a
user's payment, refunds part of it, then ends the subscription (access stops)."""

from __future__ import annotations

import time
import uuid

import allure

from integration_tests.clients import CARD_OK, BillingClient, PaymentPage
from integration_tests.conftest import screenshot
from integration_tests.scenario import COVERED_FILM_ID

pytestmark = allure.feature("Manager in the admin panel")


def log_in(page, stack) -> None:
    with allure.step("Manager logs in to the admin panel"):
        page.goto(f"{stack.admin_url}/admin/login/")
        page.fill("#id_username", stack["ADMIN_USERNAME"])
        page.fill("#id_password", stack["ADMIN_PASSWORD"])
        page.click("input[type=submit]")
        page.wait_for_url(f"{stack.admin_url}/admin/")
        screenshot(page, "admin home")


def wait_for_plan(user: BillingClient, name: str, timeout: float = 20) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for plan in user.plans().json()["items"]:
            if plan["name"] == name:
                return plan
        time.sleep(0.5)
    return None


@allure.title(
    "A plan made in the admin panel can be bought; the manager refunds part of it, then ends it"
)
def test_manager_creates_plan_then_refunds_a_payment(stack, page, on_exchange):
    user = BillingClient(stack, on_exchange=on_exchange)
    plan_name = f"Weekend pass {uuid.uuid4().hex[:6]}"
    log_in(page, stack)

    with allure.step("Manager creates a plan covering a film"):
        page.goto(f"{stack.admin_url}/admin/catalog/plan/add/")
        page.fill("#id_name", plan_name)
        page.fill("#id_description", "Two days of everything we show")
        page.fill("#id_price", "3.50")
        page.select_option("#id_currency", "usd")
        page.select_option("#id_period_unit", "day")
        page.fill("#id_period_count", "2")
        page.fill("#id_refund_window_days", "1")
        page.select_option("#id_films_from", label="The Matrix")
        page.click("#id_films_add")
        screenshot(page, "new plan")
        page.click("input[name=_save]")
        page.locator(".messagelist .success").wait_for()
        screenshot(page, "plan saved")

    with allure.step("The plan appears in billing's plan list once the ETL has run"):
        plan = wait_for_plan(user, plan_name)
        assert plan is not None, "the plan did not reach billing"
        assert plan["price"] == {"amount": 350, "currency": "usd"}
        assert plan["period"] == {"unit": "day", "count": 2}
        assert plan["film_ids"] == [COVERED_FILM_ID]

    with allure.step("User buys the new plan and pays"):
        bought = user.buy(plan["id"])
        assert bought.status_code == 201, bought.text
        payment = bought.json()["payment"]
        assert PaymentPage(stack, payment["payment_url"]).pay(CARD_OK).status == "succeeded"
        assert user.wait_for_payment(payment["id"], {"succeeded"})["status"] == "succeeded"

    with allure.step("Manager finds the user's payment"):
        page.goto(f"{stack.admin_url}/admin/customers/?user_id={user.user_id}")
        row = page.locator("#payments tbody tr", has_text=payment["id"])
        assert "succeeded" in row.inner_text()
        screenshot(page, "the user's payments")
        row.get_by_role("link", name="Refund…").click()

    with allure.step("Manager refunds 1.00 USD of it, keeping the subscription"):
        page.check("input[name=kind][value=partial]")
        page.fill("#id_amount", "1.00")
        page.fill("#id_reason", "Playback problems on Saturday")
        screenshot(page, "refund form")
        page.click("input[type=submit][value=Refund]")
        page.locator("#refunds").wait_for()
        screenshot(page, "after the refund")

    with allure.step("The partial refund shows in the user's history"):
        seen = user.wait_for_payment(payment["id"], {"partially_refunded"})
        assert seen["status"] == "partially_refunded", seen
        assert seen["refunded_amount"] == 100
        assert [r["amount"] for r in seen["refunds"]] == [100]
        assert user.access(COVERED_FILM_ID).json()["allowed"] is True

    with allure.step("Manager ends the subscription with a reason; billing ends it, access stops"):
        subscription_id = bought.json()["subscription"]["id"]
        page.goto(f"{stack.admin_url}/admin/customers/?user_id={user.user_id}")
        row = page.locator("#subscriptions tbody tr", has_text=subscription_id)
        assert "active" in row.inner_text()
        row.get_by_role("link", name="End subscription…").click()
        page.fill("#id_reason", "Asked by phone to stop now")
        screenshot(page, "end subscription form")
        page.click("input[type=submit][value='End subscription']")
        page.locator(".messagelist .success").wait_for()
        row = page.locator("#subscriptions tbody tr", has_text=subscription_id)
        assert "expired" in row.inner_text()
        screenshot(page, "after ending the subscription")
        ended = user.wait_for_subscription(subscription_id, lambda s: s["status"] == "expired")
        assert ended["status"] == "expired", ended
        assert user.access(COVERED_FILM_ID).json()["allowed"] is False
