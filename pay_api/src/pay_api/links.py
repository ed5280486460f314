"""Signed, expiring links that billing emails to a user about a renewal payment.

A link token is a JWT (HS256, SERVICE_JWT_SECRET, which both services hold) with
`aud = "pay_api:link"` — so it never passes for a service token (`aud = "pay_api"`) nor the
reverse — `sub` = what it opens, `use` = what the page does and `exp`:
`authenticate` (sub = a payment: finish 3-D Secure of the renewal's PaymentIntent), `card`
(sub = a payment: give another card and pay the renewal with it), `card_update` (sub = a user:
save another card for the next renewals). A token for another subject, another use, a bad
signature or a past `exp` opens nothing.
"""

from __future__ import annotations

import uuid

import jwt

from pay_api.errors import LinkExpired, LinkInvalid

LINK_AUDIENCE = "pay_api:link"
LINK_USES = ("authenticate", "card", "card_update")


def verify_link(token: str | None, *, secret: str, subject: uuid.UUID, use: str) -> None:
    """Raise `LinkInvalid`/`LinkExpired` unless `token` opens `use` on this subject."""
    if not token:
        raise LinkInvalid()
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=LINK_AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise LinkExpired() from exc
    except jwt.PyJWTError as exc:
        raise LinkInvalid() from exc
    if claims.get("sub") != str(subject) or claims.get("use") != use:
        raise LinkInvalid()
