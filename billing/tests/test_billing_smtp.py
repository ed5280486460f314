"""The SMTP sender (billing.notifications.smtp) writes each message's bytes itself, without the
`email` package: read back with that package (policy default) they hold the same subject, text,
addresses and headers — built alone, and received by the suite's real mail server. No header
value can add a header."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
import smtplib
import uuid
from email.header import decode_header, make_header

import pytest
from billing.notifications import smtp

FROM = "From: Cinema <billing@cinema.local>"
HEADERS = [
    "From",
    "To",
    "Subject",
    "Message-ID",
    "X-Cinema-Kind",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
]
SUBJECTS = {
    "ascii": "Receipt: Premium, $9.99",
    "accented": "Reçu : Première, 9,99 € — merci",
    "long non-ascii": ("Абонемент «Премиум» продлён, спасибо! " * 6)[:200],
    "emoji": "🎬 Your renewal 🍿 went through ✅ 👨‍👩‍👧",
    "long ascii": "Your Premium subscription " + "was renewed " * 12,
    "looks encoded": "=?utf-8?b?SGk=?= stays as written",
    "tab": "tab\there",
}
TEXT = (
    "Hello Zoë, 你好 🎬\n"
    + "a long line " * 40
    + "\n"
    + "x" * 300
    + "\n"
    + ".a line that starts with a dot\n.\n..\n"
    + "trailing spaces   \ntrailing tab\t\n"
    + "https://pay.public.test/pay/1/card?t=a.b=c&x=%3D==\n"
    + "From the first column\n\n— Cinema\n"
)
ENCODED_WORD = re.compile(rb"=\?([^?]*)\?([bBqQ])\?([^?]*)\?=")


def _payload(to: str = "someone@users.cinema.local", **values: str) -> dict:
    return {"to": to, "subject": "Hello", "text": TEXT, "kind": "receipt", **values}


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _check_wire_format(raw: bytes) -> None:
    """7-bit, CRLF lines only, none over 76 characters; each encoded-word at most 75 characters
    and whole UTF-8 characters (it decodes on its own)."""
    assert raw.isascii()
    bare = raw.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 76
    head = raw.split(b"\r\n\r\n", 1)[0]
    for word in ENCODED_WORD.finditer(head):
        assert len(word[0]) <= 75
        assert (word[1].lower(), word[2].lower()) == (b"utf-8", b"b")
        base64.b64decode(word[3], validate=True).decode("utf-8")  # strict: whole characters


def _build(payload: dict) -> tuple[list[str], bytes]:
    recipients, raw = smtp.message_bytes(FROM, payload)
    _check_wire_format(raw)
    return recipients, raw


@pytest.mark.parametrize("subject", SUBJECTS.values(), ids=SUBJECTS.keys())
def test_a_subject_reads_back_as_written(subject):
    _, raw = _build(_payload(subject=subject))
    message = _parse(raw)
    assert str(message["Subject"]) == subject
    assert list(message.keys()) == HEADERS
    if subject.isascii() and subject.isprintable() and len(subject) < 60 and "=?" not in subject:
        assert f"Subject: {subject}\r\n".encode() in raw  # readable as is


def test_the_text_reads_back_as_written():
    _, raw = _build(_payload())
    message = _parse(raw)
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message["MIME-Version"] == "1.0"
    assert message["X-Cinema-Kind"] == "receipt"
    assert message.get_content().replace("\r\n", "\n") == TEXT
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert b"\r\n=2E\r\n" in body  # a lone '.' (smtplib dot-stuffs the others)
    assert b"trailing spaces  =20\r\n" in body and b"trailing tab=09\r\n" in body


@pytest.mark.parametrize(
    "text", ["no line break at the end", "mac\rline\r\nbreaks\r", "", "x" * 200]
)
def test_a_text_always_ends_in_a_line_break_and_uses_crlf(text):
    _, raw = _build(_payload(text=text))
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    expected += "" if expected.endswith("\n") else "\n"
    assert _parse(raw).get_content().replace("\r\n", "\n") == expected


@pytest.mark.parametrize(
    "subject",
    [
        "Hi\r\nBcc: evil@example.com",
        "Hi\nBcc: evil@example.com",
        "Hi\rBcc: evil@example.com",
        "Hi\r\n\r\nA body of my own",
        "Héllo\r\nBcc: evil@example.com",
        "Hi\x00\x1b\x7f",
    ],
)
def test_a_line_break_in_a_subject_adds_no_header(subject):
    recipients, raw = _build(_payload(subject=subject))
    message = _parse(raw)
    assert list(message.keys()) == HEADERS and message["Bcc"] is None
    assert recipients == ["someone@users.cinema.local"]
    assert str(message["Subject"]) == subject  # kept, as encoded-words
    assert message.get_content().replace("\r\n", "\n") == TEXT


@pytest.mark.parametrize(
    "to",
    [
        "someone@users.cinema.local\r\nBcc: evil@example.com",
        "someone@users.cinema.local\nevil@example.com",
        "Someone\r\n <someone@users.cinema.local>",
        "someone@users.cinema.local\x00",
        "zoë@users.cinema.local",  # non-ASCII: would need SMTPUTF8
        '"some one"@users.cinema.local',
        "no address at all",
        "",
    ],
)
def test_a_to_that_is_not_plain_addresses_is_refused(to):
    with pytest.raises(smtp.UnsendableAddress):
        smtp.message_bytes(FROM, _payload(to=to))


@pytest.mark.parametrize(
    ("to", "recipients", "mailboxes"),
    [
        (
            "a.b+c@users.cinema.local",
            ["a.b+c@users.cinema.local"],
            [("", "a.b+c@users.cinema.local")],
        ),
        (
            "Some One <one@users.cinema.local>",
            ["one@users.cinema.local"],
            [("Some One", "one@users.cinema.local")],
        ),
        (
            "Zoë Ünïcode 🎬 <z@users.cinema.local>",
            ["z@users.cinema.local"],
            [("Zoë Ünïcode 🎬", "z@users.cinema.local")],
        ),
        (
            '"Doe, Jane" <j@users.cinema.local>',
            ["j@users.cinema.local"],
            [("Doe, Jane", "j@users.cinema.local")],
        ),
        (
            "a@users.cinema.local, Bé <b@users.cinema.local>",
            ["a@users.cinema.local", "b@users.cinema.local"],
            [("", "a@users.cinema.local"), ("Bé", "b@users.cinema.local")],
        ),
        (
            "Ж" * 80 + " <long@users.cinema.local>",
            ["long@users.cinema.local"],
            [("Ж" * 80, "long@users.cinema.local")],
        ),
    ],
)
def test_the_envelope_gets_the_addresses_of_to(to, recipients, mailboxes):
    got, raw = _build(_payload(to=to))
    assert got == recipients
    addresses = _parse(raw)["To"].addresses
    assert [a.addr_spec for a in addresses] == recipients
    # Read by RFC 2047's rules (the space between two encoded-words is folding, not text), the
    # header is `to` again. The policy's parser keeps that space inside a display name (it
    # reads CPython's own folding of a long name the same way): its names are compared only
    # where each name is one encoded-word at most.
    folded = email.message_from_bytes(raw, policy=email.policy.compat32)["To"]
    assert str(make_header(decode_header(folded.replace("\r\n", "")))) == to
    if all(len(name.encode()) <= 39 for name, _ in mailboxes):
        assert [(a.display_name, a.addr_spec) for a in addresses] == mailboxes


def test_every_message_has_its_own_message_id():
    ids = {_parse(_build(_payload())[1])["Message-ID"] for _ in range(500)}
    assert len(ids) == 500
    assert all(re.fullmatch(r"<[0-9a-f]{32}@cinema\.billing>", i) for i in ids)


# --- through the suite's mail server (real SMTP) ---

on_the_session_loop = pytest.mark.asyncio(loop_scope="session")


def _mailbox() -> str:
    return f"{uuid.uuid4()}@users.cinema.local"


@on_the_session_loop
async def test_messages_arrive_through_smtp_as_written(resources, mail_server):
    settings = resources.settings.model_copy(
        update={"sender_address": "Cinéma Billing <billing@cinema.local>"}
    )
    payloads = [_payload(to=_mailbox(), subject=s) for s in SUBJECTS.values()]
    assert await asyncio.to_thread(smtp.send_all, settings, payloads) == len(payloads)
    for payload in payloads:
        (record,) = await mail_server.messages(payload["to"])
        assert record["from"] == "billing@cinema.local"
        assert record["to"] == [payload["to"]]
        assert record["subject"] == payload["subject"]
        assert record["text"].replace("\r\n", "\n") == TEXT
        raw = mail_server.raw(record["id"])
        _check_wire_format(raw)  # as written: dot-stuffing undone by the server
        message = _parse(raw)
        assert list(message.keys()) == HEADERS
        (sender,) = message["From"].addresses
        assert (sender.display_name, sender.addr_spec) == ("Cinéma Billing", "billing@cinema.local")
        assert message["To"] == payload["to"]


@on_the_session_loop
async def test_a_to_of_several_addresses_reaches_each(resources, mail_server):
    first, second = _mailbox(), _mailbox()
    payload = _payload(to=f"Zoë <{first}>, {second}", subject="Both")
    assert await asyncio.to_thread(smtp.send_all, resources.settings, [payload]) == 1
    for mailbox in (first, second):
        (record,) = await mail_server.messages(mailbox)
        assert record["to"] == [first, second] and record["subject"] == "Both"


@on_the_session_loop
async def test_a_message_that_cannot_be_sent_stops_the_batch(resources, mail_server):
    """send_all's contract: how many were sent before the error, which is raised only when none
    was (the worker then keeps the rest for its next pass)."""
    sent, refused, after = _mailbox(), _mailbox(), _mailbox()
    payloads = [
        _payload(to=sent),
        _payload(to=f"{refused}\r\nBcc: {after}"),
        _payload(to=after),
    ]
    assert await asyncio.to_thread(smtp.send_all, resources.settings, payloads) == 1
    with pytest.raises(smtplib.SMTPException):
        await asyncio.to_thread(smtp.send_all, resources.settings, payloads[1:])
    assert len(await mail_server.messages(sent)) == 1
    assert await mail_server.messages(refused) == []
    assert await mail_server.messages(after) == []


@on_the_session_loop
async def test_a_sender_that_is_not_an_address_sends_nothing(resources, mail_server):
    to = _mailbox()
    settings = resources.settings.model_copy(
        update={"sender_address": "billing@cinema.local\r\nBcc: evil@example.com"}
    )
    with pytest.raises(smtp.UnsendableAddress):
        await asyncio.to_thread(smtp.send_all, settings, [_payload(to=to)])
    assert await mail_server.messages(to) == []
