"""Sending emails over SMTP (the standard library's client, run in a thread).

Production: a real SMTP relay (BILLING_SMTP_HOST/PORT, STARTTLS and credentials when set). Under
`make up` and in the tests: the local mail server (scripts/mail_server.py), which keeps them all.
"""

from __future__ import annotations

import smtplib
from email.charset import QP, Charset
from email.header import Header
from email.mime.text import MIMEText
from email.utils import make_msgid

from billing.config import Settings

# UTF-8 text, quoted-printable: readable in any mail tool. Built with the classic `MIMEText`
# rather than `EmailMessage`: a seventh of the CPU per message (bench/README.md, renewals).
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


def _header(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


def _message(settings: Settings, payload: dict) -> MIMEText:
    message = MIMEText(payload["text"], "plain", _UTF8)
    message["From"] = _header(settings.sender_address)
    message["To"] = payload["to"]
    message["Subject"] = _header(payload["subject"])
    message["Message-ID"] = make_msgid(domain="cinema.billing")
    message["X-Cinema-Kind"] = payload["kind"]
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
