"""Access to the per-app objects (settings, database, gateway) from views."""

from __future__ import annotations

from flask import current_app

from pay_api.config import Settings
from pay_api.db import Database
from pay_api.gateway import Gateway
from pay_api.payments.renewals import StripeCalls


def settings() -> Settings:
    return current_app.extensions["pay_api.settings"]


def db() -> Database:
    return current_app.extensions["pay_api.db"]


def gateway() -> Gateway:
    return current_app.extensions["pay_api.gateway"]


def stripe_calls() -> StripeCalls:
    """The process's pool for Stripe requests sent side by side (a batch's steps)."""
    return current_app.extensions["pay_api.stripe_calls"]
