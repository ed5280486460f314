"""Security headers on every answer of pay_api (the payment page above all).

* `Content-Security-Policy`: pages may run only our own scripts and Stripe.js (from its origin:
  `https://js.stripe.com`, or localstripe's offline), talk only to us and to Stripe's API, frame
  only Stripe's frames, and may be framed by nobody (`frame-ancestors 'none'`: no clickjacking of
  a payment form). JSON answers get `default-src 'none'`.
* `X-Frame-Options: DENY` (browsers without CSP 3), `X-Content-Type-Options: nosniff`.
* `Strict-Transport-Security` when pay_api is served over https (`PAY_API_PUBLIC_URL`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response

from pay_api.config import Settings

# Stripe's documented needs for Stripe.js and Elements (besides its script's origin).
STRIPE_API_ORIGIN = "https://api.stripe.com"
STRIPE_FRAME_ORIGINS = ("https://js.stripe.com", "https://hooks.stripe.com")
HSTS = "max-age=31536000; includeSubDomains"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_policy(settings: Settings) -> str:
    """The payment page's CSP, for real Stripe or localstripe."""
    script = _origin(settings.stripe_js)
    if settings.uses_localstripe:
        # The mock Stripe.js calls localstripe where it was loaded from (STRIPE_API_BASE may be
        # a name only the servers resolve, as in docker-compose).
        api, frames = script, (script,)
    else:
        api, frames = STRIPE_API_ORIGIN, STRIPE_FRAME_ORIGINS
    directives = {
        "default-src": "'none'",
        "script-src": f"'self' {script}",
        "connect-src": f"'self' {api}",
        "frame-src": " ".join(frames),
        "style-src": "'self'",
        "img-src": "'self' data:",
        "font-src": "'self'",
        "form-action": "'self'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def init_app(app: Flask, settings: Settings) -> None:
    page = page_policy(settings)
    https = settings.public_url.startswith("https://")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        html = response.mimetype == "text/html"
        response.headers["Content-Security-Policy"] = (
            page if html else "default-src 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if https:
            response.headers["Strict-Transport-Security"] = HSTS
        return response
