"""The emails the stack sent, as its local mail server keeps them (scripts/mail_server.py)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from .stack import StackSettings, exchange_hooks

LINK = re.compile(r"https?://\S+")


class Mailbox:
    def __init__(self, settings: StackSettings, on_exchange=None) -> None:
        self.http = httpx.Client(
            base_url=settings["MAIL_URL"], timeout=10, event_hooks=exchange_hooks(on_exchange)
        )

    def messages(self, to: str) -> list[dict[str, Any]]:
        answer = self.http.get("/messages", params={"to": to})
        answer.raise_for_status()
        return answer.json()["items"]

    def wait_for(
        self, to: str, subject_part: str, timeout: float = 40, text_part: str = ""
    ) -> dict[str, Any]:
        """The newest message to `to` whose subject contains `subject_part` and whose text
        contains `text_part` (polls: emails are sent by billing's worker, after the change)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                m
                for m in self.messages(to)
                if subject_part in m["subject"] and text_part in m["text"]
            ]
            if found or time.monotonic() > deadline:
                if not found:
                    raise AssertionError(f"no email to {to} about {subject_part!r}")
                return found[-1]
            time.sleep(0.5)


def links_in(message: dict[str, Any]) -> list[str]:
    return LINK.findall(message["text"])
