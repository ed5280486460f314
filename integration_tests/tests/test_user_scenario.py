"""The cinema's user scenario against the running system, one Allure step per scenario step."""

import allure
import pytest

from integration_tests.renewal_scenario import RenewalScenario
from integration_tests.scenario import Scenario


@allure.feature("User scenario")
@allure.title("A user buys a plan, pays, watches, cancels within the window and is refunded")
def test_user_buys_pays_watches_and_is_refunded(stack, on_exchange):
    scenario = Scenario(stack, on_exchange=on_exchange)
    for name, step in scenario.steps():
        with allure.step(name):
            summary = step()
            allure.attach(summary, name="result", attachment_type=allure.attachment_type.TEXT)


@pytest.mark.moves_clock
@allure.feature("Renewals")
@allure.title(
    "Renewal with the saved card; a declined renewal in grace paid through the emailed link; "
    "cancel at period end"
)
def test_subscriptions_renew_and_dunning_ends_through_the_emailed_link(stack, on_exchange):
    scenario = RenewalScenario(stack, on_exchange=on_exchange)
    for name, step in scenario.steps():
        with allure.step(name):
            summary = step()
            allure.attach(summary, name="result", attachment_type=allure.attachment_type.TEXT)
