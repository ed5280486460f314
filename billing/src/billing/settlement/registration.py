"""Registering a payment with pay_api (idempotent by payment id) and applying its answer."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from billing.errors import GatewayError, GatewayUnavailable
from billing.outbox import commit
from billing.pay_api import PayApiRejected, PayApiUnavailable
from billing.payments.models import Payment
from billing.payments.service import PaymentReport, claim, lock_payment, schedule_check
from billing.resources import Resources
from billing.settlement.answers import apply_payment_report

logger = logging.getLogger(__name__)


async def send_registration(resources: Resources, payment: Payment) -> dict:
    """POST the payment to pay_api (idempotent by its id); pay_api's answer."""
    return await resources.pay_api.register_payment(
        payment_id=str(payment.id),
        user_id=str(payment.user_id),
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        return_url=resources.settings.return_url_for(str(payment.id)),
        gross_amount=payment.gross_amount,
        discount_amount=payment.discount_amount,
        promo_code=payment.promo_code,
    )


async def register(
    *,
    resources: Resources,
    payment_id: uuid.UUID,
    now: datetime,
    raise_errors: bool,
    claimed: bool = False,
) -> None:
    """Create the payment at pay_api if it is still `created` (idempotent by payment id).

    `claimed`: the caller (the worker) already holds the row's lease."""
    settings = resources.settings
    async with resources.sessionmaker() as session:
        unregistered = Payment.status == "created"
        lease = settings.worker_claim_seconds
        if not claimed and not await claim(
            session, Payment, payment_id, unregistered, now=now, seconds=lease
        ):
            return  # someone else registers it right now, or it moved on
        payment = await session.get(Payment, payment_id)
        try:
            answer = await send_registration(resources, payment)
        except (PayApiUnavailable, PayApiRejected) as exc:
            payment = await lock_payment(session, payment_id)
            payment.claimed_until = None
            schedule_check(payment, now=now, settings=settings, retry=True)
            await session.commit()
            if isinstance(exc, PayApiRejected):
                logger.error(
                    "pay_api refused a payment",
                    extra={"payment_id": str(payment_id), "code": exc.code},
                )
                if raise_errors:
                    raise GatewayError(
                        f"The payment gateway refused the payment ({exc.code})."
                    ) from exc
            elif raise_errors:
                raise GatewayUnavailable() from exc
            return
        payment = await lock_payment(session, payment_id)
        payment.claimed_until = None
        await apply_payment_report(
            session,
            payment=payment,
            report=PaymentReport.from_answer(answer, asked_at=None),
            now=now,
            settings=settings,
        )
        await commit(session, resources.access_cache)
