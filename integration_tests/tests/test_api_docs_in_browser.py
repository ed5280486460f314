"""billing's API docs in Chromium with no internet: /docs (Swagger UI) loads every file from
billing itself and renders the API."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

import allure
import pytest

from integration_tests.conftest import screenshot

pytestmark = allure.feature("API docs in a browser")


@pytest.fixture
def offline_page(page, stack):
    """A page that can reach billing only: any other host is refused, as with no internet."""
    billing = urlsplit(stack.billing_url).netloc
    requested: list[str] = []
    refused: list[str] = []

    def route(request_route):
        url = request_route.request.url
        requested.append(url)
        if urlsplit(url).netloc == billing:
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort("internetdisconnected")

    page.route("**/*", route)
    return SimpleNamespace(page=page, requested=requested, refused=refused)


@allure.title("/docs renders the API with Swagger UI's files served by billing (offline)")
def test_swagger_ui_works_offline(offline_page, stack):
    page = offline_page.page
    with allure.step("Open billing's /docs with every other host unreachable"):
        page.goto(f"{stack.billing_url}/docs")
    with allure.step("Swagger UI shows the API's title and its operations"):
        page.locator(".swagger-ui .info .title").wait_for(timeout=15_000)
        assert "Cinema Billing" in page.locator(".swagger-ui .info .title").inner_text()
        page.locator(".opblock").first.wait_for(timeout=15_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/api/v1/plans" in path.replace("\u200b", "") for path in paths), paths
        screenshot(page, "billing /docs")
    with allure.step("Every file came from billing; nothing was asked of another host"):
        assert offline_page.refused == []
        assert any(url.endswith("swagger-ui-bundle.js") for url in offline_page.requested)
