"""Sending emails over SMTP (the standard library's client, run in a thread).

Production: a real SMTP relay (BILLING_SMTP_HOST/PORT, STARTTLS and credentials when set). Under
`make up` and in the tests: the local mail server (scripts/mail_server.py), which keeps them all.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from billing.config import Settings


def _message(settings: Settings, payload: dict) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender_address
    message["To"] = payload["to"]
    message["Subject"] = payload["subject"]
    message["Message-ID"] = make_msgid(domain="cinema.billing")
    message["X-Cinema-Kind"] = payload["kind"]
    message.set_content(payload["text"])
    return message


def send_all(settings: Settings, payloads: list[dict]) -> int:
    """Send in order over one connection; how many were sent before an error (which is raised
    only when none was)."""
    sent = 0
    try:
        with smtplib.SMTP(
            settings.relay_host, settings.relay_port, timeout=settings.relay_timeout_seconds
        ) as client:
            if settings.relay_starttls:
                client.starttls()
            if settings.relay_username:
                client.login(settings.relay_username, settings.relay_password)
            for payload in payloads:
                client.send_message(_message(settings, payload))
                sent += 1
    except (OSError, smtplib.SMTPException):
        if sent == 0:
            raise
    return sent
