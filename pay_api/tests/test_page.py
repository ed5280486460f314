"""The payment page: what the user sees before paying."""

from pay_api.money import format_money


def test_page_shows_plan_amount_and_currency_before_paying(client, api, localstripe):
    payment = api.create_payment(
        amount=1299,
        currency="usd",
        description="Premium\nAll films in HD, cancel anytime",
        return_url="http://cinema.test/account",
    )
    response = client.get(f"/pay/{payment['payment_id']}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Premium" in html
    assert "All films in HD, cancel anytime" in html
    assert "$12.99" in html
    assert f'src="{localstripe}/js.stripe.com/v3/"' in html
    assert 'id="card-element"' in html
    assert 'href="http://cinema.test/account"' in html
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
    assert "pk_test_offline" in html
    assert response.headers["Cache-Control"] == "no-store"


def test_page_shows_the_price_the_discount_and_the_total(client, api):
    payment = api.create_payment(
        amount=750, currency="usd", gross_amount=1000, discount_amount=250, promo_code="SPRING25"
    )
    html = client.get(f"/pay/{payment['payment_id']}").get_data(as_text=True)
    assert '<dd id="gross-amount">$10.00</dd>' in html
    assert '<span id="promo-code">SPRING25</span>' in html
    assert '<dd id="discount-amount">−$2.50</dd>' in html
    assert 'data-amount="750"' in html and "$7.50" in html
    # Without a discount the page shows the total alone.
    plain = api.create_payment(amount=999, currency="usd")
    assert "price-breakdown" not in client.get(f"/pay/{plain['payment_id']}").get_data(as_text=True)


def test_paid_page_shows_success_and_no_form(client, api):
    payment = api.create_payment(amount=500, currency="eur")
    api.pay(payment["payment_id"])
    html = client.get(f"/pay/{payment['payment_id']}").get_data(as_text=True)
    assert '<section id="success" class="notice success"  role="status">' in html
    assert '<form id="payment-form" hidden' in html


def test_declined_page_shows_the_reason(client, api):
    payment = api.create_payment()
    api.pay(payment["payment_id"], "4000000000000341")
    html = client.get(f"/pay/{payment['payment_id']}").get_data(as_text=True)
    assert "Your card was declined. Try another card." in html
    assert '<form id="payment-form"  novalidate>' in html


def test_unknown_payment_page_is_404(client):
    response = client.get("/pay/not-a-payment")
    assert response.status_code == 404
    assert "Payment not found" in response.get_data(as_text=True)


def test_static_script_and_styles_are_served(client):
    script = client.get("/static/pay.js").get_data(as_text=True)
    assert "confirmCardSetup" in script and "confirmCardPayment" in script
    assert "button.disabled = true" in script
    css = client.get("/static/pay.css").get_data(as_text=True)
    assert "max-width: 480px" in css


def test_money_formatting():
    assert format_money(1299, "usd") == "$12.99"
    assert format_money(500, "jpy") == "¥500"
    assert format_money(1234567, "eur") == "€12,345.67"
    assert format_money(1500, "kwd") == "KWD1.500"


def test_the_page_may_run_only_its_own_scripts_and_stripes_and_is_never_framed(
    client, api, localstripe
):
    payment = api.create_payment()
    response = client.get(f"/pay/{payment['payment_id']}")
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == f"'self' {localstripe}"  # no 'unsafe-inline', no other host
    assert policy["connect-src"] == f"'self' {localstripe}"
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in response.headers  # served over http here
    # JSON answers too: nothing to run, nothing to frame.
    status = client.get(f"/pay/{payment['payment_id']}/status")
    assert status.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert status.headers["X-Content-Type-Options"] == "nosniff"


def test_with_real_stripe_the_policy_names_stripes_origins_and_https_gets_hsts(
    database_url, billing
):
    from pay_api.headers import page_policy

    from pay_api import create_app

    from .conftest import make_settings

    settings = make_settings(
        database_url,
        "",
        billing.url,
        STRIPE_JS_URL="",
        STRIPE_PUBLISHABLE_KEY="pk_test_real",
        PAY_API_PUBLIC_URL="https://pay.example.com",
    )
    policy = page_policy(settings)
    assert "script-src 'self' https://js.stripe.com;" in policy
    assert "connect-src 'self' https://api.stripe.com;" in policy
    assert "frame-src https://js.stripe.com https://hooks.stripe.com;" in policy
    app = create_app(settings)
    try:
        response = app.test_client().get("/health")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    finally:
        app.extensions["pay_api.db"].dispose()
