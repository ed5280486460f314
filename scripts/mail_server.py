"""A local SMTP server that keeps every message, for development, the demo and the tests.

    python scripts/mail_server.py --smtp-port 8026 --http-port 8025 --data-dir var/mail

billing sends its emails here (BILLING_SMTP_HOST/PORT) under `make up` and in the test stacks;
nothing leaves the machine. Each message is kept as `<n>.eml` (the bytes received) and `<n>.json`
(sender, recipients, subject, text body) in `--data-dir`, which starts empty. Read them with
`make mail`, or over HTTP (127.0.0.1 only):

    GET /health                      {"status": "ok"}
    GET /messages[?to=<address>][&after=<n>]
                                     {"items": [message, ...]}  oldest first (numbered above n)
    GET /messages/<n>                one message: {id, received_at, from, to, subject, text}

The tests read the real emails through this API and follow their links.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session


class Mailbox:
    """Messages on disk, numbered in the order they arrived."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for old in [*directory.glob("*.eml"), *directory.glob("*.json")]:
            old.unlink()
        self.count = 0

    def keep(self, envelope: Envelope) -> dict:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        self.count += 1
        record = {
            "id": self.count,
            "received_at": datetime.now(UTC).isoformat(),
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(message.get("Subject", "")),
            "text": body.get_content() if body is not None else "",
        }
        (self.directory / f"{self.count}.eml").write_bytes(raw)
        (self.directory / f"{self.count}.json").write_text(json.dumps(record, indent=1))
        return record

    def messages(self, to: str | None = None, after: int = 0) -> list[dict]:
        """Oldest first; only those numbered above `after` (a reader that polls reads only what
        is new)."""
        records = [
            json.loads((self.directory / f"{n}.json").read_text())
            for n in range(max(after, 0) + 1, self.count + 1)
        ]
        if to:
            records = [r for r in records if to.lower() in (a.lower() for a in r["to"])]
        return records


class KeepEverything:
    """aiosmtpd handler: accept every message and keep it."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.mailbox.keep(envelope)
        return "250 Message accepted for delivery"


def http_app(mailbox: Mailbox) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def messages(request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            return web.json_response(
                {"code": "validation_error", "message": "after: a message number."}, status=422
            )
        return web.json_response({"items": mailbox.messages(request.query.get("to"), after)})

    async def one(request: web.Request) -> web.Response:
        try:
            number = int(request.match_info["number"])
        except ValueError:
            number = 0
        if not 1 <= number <= mailbox.count:
            return web.json_response(
                {"code": "not_found", "message": "No such message."}, status=404
            )
        return web.json_response(mailbox.messages(after=number - 1)[0])

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/messages", messages)
    app.router.add_get("/messages/{number}", one)
    return app


async def serve(smtp_port: int, http_port: int, directory: Path) -> None:
    mailbox = Mailbox(directory)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(KeepEverything(mailbox), hostname="localhost"), "127.0.0.1", smtp_port
    )
    runner = web.AppRunner(http_app(mailbox), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    try:
        await smtp.serve_forever()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smtp-port", type=int, default=8026)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--data-dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    asyncio.run(serve(args.smtp_port, args.http_port, args.data_dir.resolve()))


if __name__ == "__main__":
    main()
