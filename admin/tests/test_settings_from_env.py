import pytest
from config.env import email_from_url
from django.core.exceptions import ImproperlyConfigured


def test_no_smtp_relay_writes_mail_to_the_log():
    assert email_from_url("")["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


def test_smtp_relay_on_587_uses_starttls_and_unquotes_the_password():
    settings = email_from_url("smtp://mailer:p%40ss@relay.example:587")
    assert settings == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "relay.example",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_HOST_PASSWORD": "p@ss",
        "EMAIL_USE_SSL": False,
        "EMAIL_USE_TLS": True,
    }


def test_smtps_relay_uses_tls_from_the_start_on_465():
    settings = email_from_url("smtps://relay.example")
    assert (settings["EMAIL_PORT"], settings["EMAIL_USE_SSL"], settings["EMAIL_USE_TLS"]) == (
        465,
        True,
        False,
    )


def test_a_relay_url_of_another_kind_refuses_to_start():
    with pytest.raises(ImproperlyConfigured, match="SMTP_URL"):
        email_from_url("http://relay.example")
