import os
import subprocess
import sys
from pathlib import Path

ADMIN = Path(__file__).resolve().parents[1]


def settings_of(module: str, names: str, *, drop_prefix: str = "", **env: str) -> list[str]:
    """Settings `names` (space-separated) of `module`, read in a fresh interpreter with the
    environment's variables starting with `drop_prefix` removed and `env` set."""
    code = (
        "import django; from django.conf import settings as s; django.setup(); "
        f"print(*[getattr(s, n) for n in {names.split()!r}])"
    )
    clean = {k: v for k, v in os.environ.items() if not (drop_prefix and k.startswith(drop_prefix))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ADMIN,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": module,
            "DJANGO_SECRET_KEY": "test-only-" * 6,
            "SERVICE_JWT_SECRET": "test-only",
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def email_settings(**env: str) -> list[str]:
    """The EMAIL_* settings production would run with, read in a fresh interpreter."""
    return settings_of(
        "config.settings.production",
        "EMAIL_BACKEND EMAIL_HOST EMAIL_PORT EMAIL_HOST_USER EMAIL_USE_TLS DEFAULT_FROM_EMAIL",
        drop_prefix="SMTP_",
        **env,
    )


def test_no_smtp_relay_writes_mail_to_the_log():
    assert email_settings()[0] == "django.core.mail.backends.console.EmailBackend"


def test_the_smtp_relay_comes_from_the_smtp_settings():
    assert email_settings(
        SMTP_HOST="relay.example",
        SMTP_PORT="2525",
        SMTP_USERNAME="mailer",
        SMTP_STARTTLS="0",
        SMTP_FROM="billing@cinema.example",
    ) == [
        "django.core.mail.backends.smtp.EmailBackend",
        "relay.example",
        "2525",
        "mailer",
        "False",
        "billing@cinema.example",
    ]


def test_database_urls_and_typed_values_are_read_or_refused(monkeypatch):
    import pytest
    from config.env import database_from_url, env_bool, env_int, env_str
    from django.core.exceptions import ImproperlyConfigured

    config = database_from_url("postgresql://u:p%40ss@db.example:6432/admin?sslmode=require")
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == ("admin", "u", "p@ss")
    assert (config["HOST"], str(config["PORT"])) == ("db.example", "6432")
    assert config["OPTIONS"] == {"sslmode": "require"}
    with pytest.raises(ImproperlyConfigured):
        database_from_url("mysql://u@h/admin")
    monkeypatch.setenv("ADMIN_TEST_INT", "")
    assert env_int("ADMIN_TEST_INT", 7) == 7  # empty: the default
    monkeypatch.setenv("ADMIN_TEST_INT", "seven")
    with pytest.raises(ImproperlyConfigured, match="ADMIN_TEST_INT"):
        env_int("ADMIN_TEST_INT", 7)
    monkeypatch.setenv("ADMIN_TEST_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="ADMIN_TEST_BOOL"):
        env_bool("ADMIN_TEST_BOOL", True)
    monkeypatch.setenv("ADMIN_TEST_STR", "")
    with pytest.raises(ImproperlyConfigured, match="ADMIN_TEST_STR"):
        env_str("ADMIN_TEST_STR")
