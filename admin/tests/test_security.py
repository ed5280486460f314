"""The admin's defenses: login lockout (django-axes, logged), CSP and framing headers, debug pages
off unless asked for, HSTS and secure cookies in production."""

import logging

import pytest
import test_settings_from_env as settings_from_env
from django.urls import reverse

pytestmark = pytest.mark.django_db


def login(client, password: str, ip: str = "203.0.113.7"):
    return client.post(
        reverse("admin:login"),
        {"username": "manager", "password": password, "next": "/admin/"},
        REMOTE_ADDR=ip,
    )


def test_repeated_wrong_passwords_lock_the_login_and_are_logged(client, manager, settings, caplog):
    caplog.set_level(logging.WARNING)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "wrong").status_code == 200  # the form again, with an error
    locked = login(client, "wrong")
    assert locked.status_code == 429
    # Locked out: even the right password is refused, from that address.
    assert login(client, "pw-manager-1").status_code == 429
    assert not client.session.get("_auth_user_id")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "AXES: New login failure" in messages
    assert "after repeated login failures" in messages  # the lockout itself
    # Another address may still log in (a lockout per user and address, and per address).
    assert login(client, "pw-manager-1", ip="198.51.100.9").status_code == 302


def test_pages_carry_a_csp_and_may_not_be_framed(client):
    response = client.get(reverse("admin:login"))
    policy = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert "default-src 'self'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def settings_of(module: str, names: str, **env: str) -> list[str]:
    return settings_from_env.settings_of(module, names, drop_prefix="DJANGO_", **env)


def test_debug_is_off_unless_the_environment_turns_it_on():
    assert settings_of("config.settings.local", "DEBUG") == ["False"]
    assert settings_of("config.settings.local", "DEBUG", DJANGO_DEBUG="1") == ["True"]
    assert settings_of("config.settings.production", "DEBUG", DJANGO_DEBUG="1") == ["False"]


def test_production_sends_hsts_and_secure_cookies():
    assert settings_of(
        "config.settings.production",
        "SECURE_HSTS_SECONDS SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SESSION_COOKIE_HTTPONLY",
    ) == ["31536000", "True", "True", "True"]
