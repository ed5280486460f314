"""What a manager looks at, in a real browser: the dashboard (the admin's home page), finding a
customer and their timeline, and the payments CSV for accounting."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import allure

from integration_tests.clients import CARD_OK, BillingClient, PaymentPage
from integration_tests.conftest import screenshot
from integration_tests.scenario import DEMO_PLAN_ID

pytestmark = allure.feature("Manager in the admin panel")


@allure.title("A manager sees the dashboard, finds a customer's timeline and downloads the CSV")
def test_manager_dashboard_timeline_and_csv(stack, page, on_exchange):
    user = BillingClient(stack, on_exchange=on_exchange)

    with allure.step("A user buys the demo plan and pays"):
        bought = user.buy(DEMO_PLAN_ID)
        assert bought.status_code == 201, bought.text
        payment = bought.json()["payment"]
        assert PaymentPage(stack, payment["payment_url"]).pay(CARD_OK).status == "succeeded"
        assert user.wait_for_payment(payment["id"], {"succeeded"})["status"] == "succeeded"

    with allure.step("Manager logs in and lands on the dashboard"):
        page.goto(f"{stack.admin_url}/admin/login/")
        page.fill("#id_username", stack["ADMIN_USERNAME"])
        page.fill("#id_password", stack["ADMIN_PASSWORD"])
        page.click("input[type=submit]")
        page.wait_for_url(f"{stack.admin_url}/admin/")
        dashboard = page.locator("#dashboard")
        dashboard.wait_for()
        assert dashboard.locator("svg.chart").count() == 4
        gross = dashboard.locator("#dashboard-totals div", has_text="Gross").inner_text()
        assert "USD" in gross and "0.00 USD" not in gross, gross
        screenshot(page, "the dashboard")

    with allure.step("Manager finds the customer from the payment id and opens the timeline"):
        page.goto(f"{stack.admin_url}/admin/customers/")
        page.fill("#id_q", payment["id"])
        page.click("#customer-search input[type=submit]")
        page.locator("#payments").wait_for()
        assert payment["id"] in page.locator("#payments").inner_text()
        page.click("#timeline-link")
        timeline = page.locator("#timeline")
        timeline.wait_for()
        kinds = [row.get_attribute("class") for row in timeline.locator("tbody tr").all()]
        assert kinds.index("timeline-payment_created") < kinds.index("timeline-payment_succeeded")
        assert "timeline-subscription_created" in kinds
        screenshot(page, "the customer's timeline")
        timeline.locator("tr.timeline-payment_succeeded a", has_text="details").click()
        page.locator("#ledger").wait_for()
        assert "charge" in page.locator("#ledger").inner_text()
        screenshot(page, "the payment and its ledger")

    with allure.step("Manager downloads today's succeeded payments as CSV"):
        page.goto(f"{stack.admin_url}/admin/")
        export = page.locator("#export-payments")
        today = datetime.now(UTC).date().isoformat()
        export.locator("input[name=payments-date_from]").fill(today)
        export.locator("select[name=payments-status]").select_option("succeeded")
        with page.expect_download() as download_info:
            export.locator("input[type=submit]").click()
        download = download_info.value
        assert download.suggested_filename.startswith("payments-")
        text = open(download.path(), encoding="utf-8").read()
        allure.attach(
            text[:4000], name="payments.csv (start)", attachment_type=allure.attachment_type.TEXT
        )
        rows = list(csv.DictReader(io.StringIO(text)))
        (row,) = [r for r in rows if r["payment_id"] == payment["id"]]
        assert (row["status"], row["currency"], row["user_id"]) == (
            "succeeded",
            "usd",
            user.user_id,
        )
        assert row["amount_minor"] == str(payment["amount"])
        assert {r["status"] for r in rows} == {"succeeded"}
