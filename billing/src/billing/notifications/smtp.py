"""Sending emails over SMTP (the standard library's client, run in a thread).

Production: a real SMTP relay (BILLING_SMTP_HOST/PORT, STARTTLS and credentials when set). Under
`make up` and in the tests: the local mail server (scripts/mail_server.py), which keeps them all.

Each message is written here as bytes, without the `email` package (building a `MIMEText` and
flattening it in `send_message` was most of the worker's cost per email; bench/email_sender.py):

    From: Cinema <billing@cinema.local>
    To: <the payload's address>
    Subject: <ASCII as is; otherwise RFC 2047 encoded-words, =?utf-8?b?...?=, folded>
    Message-ID: <uuid4 hex@cinema.billing>
    X-Cinema-Kind: receipt
    MIME-Version: 1.0
    Content-Type: text/plain; charset="utf-8"
    Content-Transfer-Encoding: quoted-printable

    <the UTF-8 text, quoted-printable, CRLF lines of at most 76 characters>

then `sendmail(envelope sender, recipients, bytes)`, which dot-stuffs it. A header value never
carries a raw CR, LF or other control character into the message (such a subject is
encoded-words; such an address is refused), so no value can add a header. The envelope addresses
are the addr-specs of the From and To values, as `send_message` took them from the headers.
"""

from __future__ import annotations

import re
import smtplib
import uuid
from binascii import b2a_base64, b2a_qp
from email.utils import formataddr, getaddresses

from billing.config import Settings

_MESSAGE_ID_DOMAIN = "cinema.billing"
_CONTENT_HEADERS = (
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
)
# A plain ASCII addr-spec (dot-atom local part, a domain): sent as is, header and envelope alike.
# Anything else (a display name, several addresses) is parsed; a quoted local part, a non-ASCII
# address or one with a control character is refused.
_ADDR_SPEC = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_LINE = 76  # the longest header line written (RFC 2047's limit for a line of encoded-words)
_WORD_OVERHEAD = len("=?utf-8?b??=")


class UnsendableAddress(smtplib.SMTPException):
    """A From or To value billing does not send to (see `_ADDR_SPEC`)."""


def _encoded_words(text: str, first_room: int) -> list[str]:
    """RFC 2047 encoded-words (UTF-8, base64) of `text`: the first at most `first_room`
    characters long, the others at most 75; each holds whole characters only (a cut never falls
    inside a UTF-8 sequence)."""
    data = text.encode("utf-8", "replace")
    words = []
    start = 0
    room = first_room
    while start < len(data):
        end = start + max((room - _WORD_OVERHEAD) // 4 * 3, 6)  # 6 bytes: any character fits
        if end < len(data):
            while data[end] & 0xC0 == 0x80:  # a continuation byte: cut before its character
                end -= 1
        encoded = b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{encoded}?=")
        start = end
        room = _LINE - 1  # a continuation line: one space, then the word
    return words


def _unstructured(name: str, value: str) -> str:
    """`name: value` (no line end): as is when it is printable ASCII that fits a line and that a
    reader could not take for an encoded-word; otherwise encoded-words, one per line."""
    line = f"{name}: {value}"
    if value.isascii() and value.isprintable() and len(line) <= _LINE and "=?" not in value:
        return line
    return f"{name}: " + "\r\n ".join(_encoded_words(value, _LINE - len(name) - 2))


def _addresses(name: str, value: str) -> tuple[str, list[str]]:
    """The header `name: value` (no line end) and its addr-specs (the envelope's)."""
    if _ADDR_SPEC.fullmatch(value):
        return f"{name}: {value}", [value]
    # getaddresses would read a line break as a separator: one would add a recipient.
    if not value.isprintable():
        raise UnsendableAddress(f"{name}: a control character in {value!r}")
    parsed = [(n, a) for n, a in getaddresses([value]) if a]
    if not parsed or not all(_ADDR_SPEC.fullmatch(a) for _, a in parsed):
        raise UnsendableAddress(f"{name}: not plain ASCII addresses: {value!r}")
    mailboxes = []
    room = _LINE - len(name) - 2
    for display, address in parsed:
        if display.isascii() and "=?" not in display:
            mailboxes.append(formataddr((display, address)))  # quoted when it needs to be
        else:
            words = _encoded_words(display, room)
            mailboxes.append("\r\n ".join(words) + f"\r\n <{address}>")
        room = _LINE - 1
    return f"{name}: " + ",\r\n ".join(mailboxes), [a for _, a in parsed]


def _body(text: str) -> bytes:
    """UTF-8, quoted-printable, CRLF lines of at most 76 characters (trailing spaces and a line
    that is a lone '.' encoded)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        # b2a_qp writes its line breaks (soft ones too) as the text's first one: CRLF, always.
        text += "\n"
    return b2a_qp(text.replace("\n", "\r\n").encode("utf-8", "replace"), istext=True)


class _Client(smtplib.SMTP):
    """`sendmail` as is, but MAIL and RCPT write the address as given instead of parsing it again
    (`smtplib.quoteaddr` runs `email.utils.parseaddr`: after the message's building, the largest
    cost left per message). Every address given here is a checked ASCII addr-spec
    (`_addresses`), so none needs SMTPUTF8 (the one option `mail` would have looked at)."""

    def mail(self, sender: str, options=()) -> tuple[int, bytes]:
        optionlist = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("mail", f"FROM:<{sender}>{optionlist}")
        return self.getreply()

    def rcpt(self, recip: str, options=()) -> tuple[int, bytes]:
        optionlist = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("rcpt", f"TO:<{recip}>{optionlist}")
        return self.getreply()


def message_bytes(from_header: str, payload: dict) -> tuple[list[str], bytes]:
    """The envelope's recipients and the message (CRLF lines, not yet dot-stuffed)."""
    to_header, recipients = _addresses("To", payload["to"])
    head = (
        f"{from_header}\r\n"
        f"{to_header}\r\n"
        f"{_unstructured('Subject', payload['subject'])}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{_MESSAGE_ID_DOMAIN}>\r\n"
        f"{_unstructured('X-Cinema-Kind', payload['kind'])}\r\n"
    )
    return recipients, head.encode("ascii") + _CONTENT_HEADERS + _body(payload["text"])


def sender(settings: Settings) -> tuple[str, str]:
    """The From header (no line end) and the envelope sender: its first addr-spec."""
    header, addresses = _addresses("From", settings.sender_address)
    return header, addresses[0]


def send_all(settings: Settings, payloads: list[dict]) -> int:
    """Send in order over one connection; how many were sent before an error (which is raised
    only when none was)."""
    sent = 0
    try:
        from_header, envelope_from = sender(settings)
        with _Client(
            settings.relay_host, settings.relay_port, timeout=settings.relay_timeout_seconds
        ) as client:
            if settings.relay_starttls:
                client.starttls()
            if settings.relay_username:
                client.login(settings.relay_username, settings.relay_password)
            for payload in payloads:
                recipients, message = message_bytes(from_header, payload)
                client.sendmail(envelope_from, recipients, message)
                sent += 1
    except (OSError, smtplib.SMTPException):
        if sent == 0:
            raise
    return sent
