"""Access to the per-app objects (settings, database, gateway) from views."""

from __future__ import annotations

from flask import current_app

from pay_api.config import Settings
from pay_api.db import Database
from pay_api.gateway import Gateway


def settings() -> Settings:
    return current_app.extensions["pay_api.settings"]


def db() -> Database:
    return current_app.extensions["pay_api.db"]


def gateway() -> Gateway:
    return current_app.extensions["pay_api.gateway"]
