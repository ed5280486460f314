"""What every running service tells a browser and a scanner: no version in `Server`, the payment
page's CSP (its own scripts and Stripe.js only, never framed), the admin's CSP."""

from __future__ import annotations

import re

import allure
import httpx


def server_versions(response: httpx.Response) -> str | None:
    server = response.headers.get("server", "")
    return server if re.search(r"\d", server) else None


@allure.title("No service names its version in the Server header")
def test_no_version_in_server_headers(stack):
    for url in (
        f"{stack.billing_url}/health",
        f"{stack.pay_api_url}/health",
        f"{stack.admin_url}/health",
    ):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, url
        assert server_versions(response) is None, (url, response.headers.get("server"))


@allure.title("The payment page runs only its own scripts and Stripe.js, and is never framed")
def test_payment_page_and_admin_headers(stack):
    page = httpx.get(f"{stack.pay_api_url}/pay/00000000-0000-4000-8000-000000000000", timeout=10)
    policy = page.headers["content-security-policy"]
    stripe_origin = re.match(r"https?://[^/]+", stack.stripe_js_base).group(0)
    assert f"script-src 'self' {stripe_origin};" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    admin = httpx.get(f"{stack.admin_url}/admin/login/", timeout=10)
    assert "frame-ancestors 'none'" in admin.headers["content-security-policy"]
    assert admin.headers["x-frame-options"] == "DENY"
