"""CPU per email of billing's SMTP sender: the bytes written directly (billing.notifications.smtp)
against the `MIMEText` + `send_message` it replaced (a copy below), in one run.

    .venv/bin/python bench/email_sender.py [--messages 5000] [--rounds 3]

A local aiosmtpd server in a child process accepts and discards every message (its CPU is not
counted). Each round runs both senders, one after the other, over the same receipts (as the
renewals send them: `billing.notifications.emails.receipt`), in batches of 100 per connection as
the worker sends them (BILLING_WORKER_BATCH_SIZE). Measured with `time.process_time()` (this
process, all threads): building the messages alone (the `MIMEText` flattened as `send_message`
does), then building and sending them — before; the new bytes through smtplib's own `sendmail`;
after (`smtp.send_all`, whose MAIL/RCPT skip smtplib's re-parse of each address). Printed:
microseconds of CPU per message, the best round of each (other work on the machine only adds).
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.charset import QP, Charset
from email.header import Header
from email.mime.text import MIMEText
from email.utils import make_msgid
from types import SimpleNamespace

from billing.notifications import emails, smtp

BATCH = 100


# --- the sender before (billing/notifications/smtp.py up to this benchmark's commit) ---
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


def _header(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


def legacy_message(settings, payload: dict) -> MIMEText:
    message = MIMEText(payload["text"], "plain", _UTF8)
    message["From"] = _header(settings.sender_address)
    message["To"] = payload["to"]
    message["Subject"] = _header(payload["subject"])
    message["Message-ID"] = make_msgid(domain="cinema.billing")
    message["X-Cinema-Kind"] = payload["kind"]
    return message


def legacy_send_all(settings, payloads: list[dict]) -> int:
    sent = 0
    with smtplib.SMTP(settings.relay_host, settings.relay_port) as client:
        for payload in payloads:
            client.send_message(legacy_message(settings, payload))
            sent += 1
    return sent


def stock_sendmail_send_all(settings, payloads: list[dict]) -> int:
    """The bytes of today's sender through smtplib's own `sendmail` (which parses each address
    again in MAIL and RCPT): what `smtp._Client` saves."""
    sent = 0
    from_header, envelope_from = smtp.sender(settings)
    with smtplib.SMTP(settings.relay_host, settings.relay_port) as client:
        for payload in payloads:
            recipients, message = smtp.message_bytes(from_header, payload)
            client.sendmail(envelope_from, recipients, message)
            sent += 1
    return sent


def legacy_build(settings, payloads: list[dict]) -> None:
    for payload in payloads:
        legacy_message(settings, payload).as_bytes()  # what send_message flattens


def direct_build(settings, payloads: list[dict]) -> None:
    from_header, _ = smtp.sender(settings)
    for payload in payloads:
        smtp.message_bytes(from_header, payload)


# --- the discarding server (run as a child: `--serve PORT`) ---
def serve(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, _server, _session, _envelope) -> str:  # noqa: N802
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Discard(), hostname="localhost"), "127.0.0.1", port
        )
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def receipts(count: int) -> list[dict]:
    settings = SimpleNamespace(recipient_template="{user_id}@users.cinema.local")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    payloads = []
    for _ in range(count):
        about = emails.About(settings, uuid.uuid4(), uuid.uuid4(), "Premium")  # type: ignore[arg-type]
        email = emails.receipt(
            about,
            payment_id=uuid.uuid4(),
            amount=999,
            currency="usd",
            period_start=start,
            period_end=start + timedelta(days=31),
            renewal=True,
        )
        payloads.append(
            {"to": email.to, "subject": email.subject, "text": email.text, "kind": email.kind}
        )
    return payloads


def cpu_per_message(run, settings, payloads: list[dict]) -> float:
    started = time.process_time()
    for i in range(0, len(payloads), BATCH):
        run(settings, payloads[i : i + BATCH])
    return (time.process_time() - started) / len(payloads) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        settings = SimpleNamespace(
            relay_host="127.0.0.1",
            relay_port=port,
            relay_timeout_seconds=10,
            relay_starttls=False,
            relay_username="",
            relay_password="",
            sender_address="Cinema <billing@cinema.local>",
        )
        payloads = receipts(args.messages)
        cases = {
            "build, MIMEText (before)": (legacy_build, []),
            "build, bytes (after)": (direct_build, []),
            "build + send, MIMEText + send_message (before)": (legacy_send_all, []),
            "build + send, bytes + smtplib's sendmail": (stock_sendmail_send_all, []),
            "build + send, bytes + sendmail, no re-parse (after)": (smtp.send_all, []),
        }
        for _ in range(args.rounds):
            for run, results in cases.values():
                results.append(cpu_per_message(run, settings, payloads))
        print(f"{args.messages} receipts, {args.rounds} rounds, batches of {BATCH}")
        print("CPU µs per message (best round; all rounds)")
        for name, (_, results) in cases.items():
            rounds = ", ".join(f"{r:.0f}" for r in results)
            print(f"  {name:52} {min(results):6.0f}   ({rounds})")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
