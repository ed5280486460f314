"""`make mail [TO=address]`: the emails the running stack sent, as the local mail server keeps
them (scripts/mail_server.py), oldest first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_tests.clients import StackSettings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", default="", help="only the messages to this address")
    args = parser.parse_args()
    url = StackSettings.load()["MAIL_URL"]
    try:
        answer = httpx.get(f"{url}/messages", params={"to": args.to} if args.to else None)
    except httpx.HTTPError:
        print(f"the mail server does not answer at {url}: is the stack up (make up)?")
        return 1
    items = answer.json()["items"]
    for message in items:
        print(f"#{message['id']}  {message['received_at']}  to {', '.join(message['to'])}")
        print(f"Subject: {message['subject']}\n")
        print(message["text"].rstrip() + "\n" + "-" * 72)
    print(f"{len(items)} message(s) at {url}/messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
