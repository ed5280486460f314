"""pay_api: the only Cinema Billing service that talks to Stripe.

gunicorn 'pay_api:create_app()' --bind 127.0.0.1:$PAY_API_PORT --workers 2 --threads 4
"""

from __future__ import annotations

import atexit
import threading

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from pay_api import db as db_module
from pay_api import errors, guard, headers, health, logs, ratelimit
from pay_api.config import Settings, get_settings
from pay_api.db import Database
from pay_api.gateway import Gateway
from pay_api.outbox import OutboxDispatcher
from pay_api.payments.renewals import StripeCalls


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; refuses to start when a required setting is missing."""
    settings = settings or get_settings()
    logs.configure_logging(settings.log_level)

    app = Flask(__name__)
    if settings.proxy_count:  # the client's address for the rate limits, behind nginx
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_count, x_proto=settings.proxy_count
        )
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["pay_api.settings"] = settings

    database = Database(settings.database_url)
    db_module.init_app(app, database)
    gateway = Gateway(settings)
    app.extensions["pay_api.gateway"] = gateway
    stripe_calls = StripeCalls(settings.stripe_concurrency)
    app.extensions["pay_api.stripe_calls"] = stripe_calls
    atexit.register(stripe_calls.shutdown)
    dispatcher = OutboxDispatcher(database, settings)
    database.after_commit.append(dispatcher.after_commit)
    app.extensions["pay_api.outbox"] = dispatcher
    atexit.register(dispatcher.shutdown)

    logs.init_app(app)
    health.init_app(app)
    errors.register_error_handlers(app)
    guard.init_app(app, settings)
    headers.init_app(app, settings)

    from pay_api.flags.views import bp as flags
    from pay_api.payments.cards import bp as card_update
    from pay_api.payments.internal import bp as payments_internal
    from pay_api.payments.page import bp as payment_page
    from pay_api.refunds.views import bp as refunds
    from pay_api.webhooks.views import bp as webhooks

    for blueprint in (payments_internal, payment_page, card_update, refunds, webhooks, flags):
        app.register_blueprint(blueprint)
    app.extensions["pay_api.limiter"] = ratelimit.init_app(app, settings, payment_page)

    if settings.stripe_register_webhook and settings.uses_localstripe:
        # In the background: localstripe may start after us, and a worker must boot quickly.
        threading.Thread(
            target=gateway.register_localstripe_webhook, name="register-webhook", daemon=True
        ).start()

    return app
