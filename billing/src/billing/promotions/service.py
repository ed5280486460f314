"""Promo codes and personal discounts: etl's upserts, what a plan costs a user (the preview and
the purchase use the same `quote`), and the redemptions listing for the admin."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import utcnow
from billing.errors import (
    AmountBelowMinimum,
    PromoCodeAlreadyUsed,
    PromoCodeExhausted,
    PromoCodeExpired,
    PromoCodeFirstPurchaseOnly,
    PromoCodeNotForPlan,
    PromoCodeNotYetValid,
    PromoCodeUnknown,
)
from billing.payments.models import Payment
from billing.payments.state import PAID_STATUSES
from billing.plans.models import Plan
from billing.promotions import pricing
from billing.promotions.models import (
    PersonalDiscount,
    PersonalDiscountPlan,
    PromoCode,
    PromoCodePlan,
    PromoCodeUser,
    Redemption,
)
from billing.promotions.schemas import (
    DiscountIn,
    PersonalDiscountIn,
    PriceOut,
    PromoCodeIn,
    RenewalPhase,
    terms_of,
)
from billing.subscriptions.models import Subscription
from billing.subscriptions.periods import period_end

# How many renewals a preview looks ahead for a change of price before it calls the rest equal.
RENEWAL_LOOKAHEAD = 60


# --- etl's upserts ---------------------------------------------------------------------------
async def _upsert(session, model, link_model, link_key: str, row_id, values: dict, plan_ids):
    """Create or update a discount row and its plan links; False when nothing changed."""
    row = await session.get(model, row_id, with_for_update=True)
    wanted = sorted(set(plan_ids))
    if row is None:
        inserted = await session.scalar(
            insert(model).values(id=row_id, **values).on_conflict_do_nothing().returning(model.id)
        )
        if inserted is None:  # created concurrently: update that one instead
            return await _upsert(session, model, link_model, link_key, row_id, values, plan_ids)
        for plan_id in wanted:
            session.add(link_model(**{link_key: row_id, "plan_id": plan_id}))
        return True
    if {key: getattr(row, key) for key in values} == values and sorted(row.plan_ids) == wanted:
        return False
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    kept = {link.plan_id: link for link in row.plans}
    row.plans = [kept.get(p) or link_model(**{link_key: row_id, "plan_id": p}) for p in wanted]
    return True


def _values(data: DiscountIn) -> dict:
    return data.model_dump(exclude={"plan_ids"})


async def upsert_promo_code(*, session: AsyncSession, promo_code_id: uuid.UUID, data: PromoCodeIn):
    """Create or update a promo code (its redemption counter is billing's own); not committed.

    The admin keeps codes unique; a code deleted there and made again under a new id takes the
    code over here: the older row is deactivated first (etl sends deletions after upserts)."""
    if data.active:
        await session.execute(
            update(PromoCode)
            .where(
                func.lower(PromoCode.code) == data.code.lower(),
                PromoCode.id != promo_code_id,
                PromoCode.active,
            )
            .values(active=False, updated_at=utcnow())
        )
    return await _upsert(
        session, PromoCode, PromoCodePlan, "promo_code_id", promo_code_id, _values(data),
        data.plan_ids,
    )  # fmt: skip


async def upsert_personal_discount(
    *, session: AsyncSession, discount_id: uuid.UUID, data: PersonalDiscountIn
) -> bool:
    """Create or update a personal discount; not committed."""
    return await _upsert(
        session, PersonalDiscount, PersonalDiscountPlan, "personal_discount_id", discount_id,
        _values(data), data.plan_ids,
    )  # fmt: skip


async def deactivate_promo_code(*, session: AsyncSession, promo_code_id: uuid.UUID) -> bool:
    """A promo code deleted in the admin: inactive here, its redemptions stay; not committed."""
    return await _deactivate(session, PromoCode, promo_code_id)


async def deactivate_personal_discount(*, session: AsyncSession, discount_id: uuid.UUID) -> bool:
    """A personal discount deleted in the admin: inactive here; not committed."""
    return await _deactivate(session, PersonalDiscount, discount_id)


async def _deactivate(session: AsyncSession, model: type, row_id: uuid.UUID) -> bool:
    """Inactive, nothing deleted; False when unknown or already inactive."""
    changed = await session.scalar(
        update(model)
        .where(model.id == row_id, model.active)
        .values(active=False, updated_at=utcnow())
        .returning(model.id)
    )
    return changed is not None


# --- what a plan costs a user ----------------------------------------------------------------
@dataclass(frozen=True)
class Quote:
    """A plan's price for one user now: the first payment, the discount behind it, renewals."""

    plan: Plan
    price: pricing.Price
    promo_code: PromoCode | None  # the code the user gave (valid), used or not
    source: str | None  # "promo_code" | "personal_discount" | None
    renewals: list[RenewalPhase] = field(default_factory=list)


def _covers(row, plan: Plan) -> bool:
    return row.all_plans or plan.id in row.plan_ids


async def find_code(*, session: AsyncSession, code: str) -> PromoCode:
    """The active promo code spelled `code` in any case."""
    row = await session.scalar(
        select(PromoCode).where(
            func.lower(PromoCode.code) == code.strip().lower(), PromoCode.active
        )
    )
    if row is None:
        raise PromoCodeUnknown(f"There is no promo code {code.strip()!r}.")
    return row


async def _has_paid_before(session: AsyncSession, user_id: uuid.UUID) -> bool:
    paid = await session.scalar(
        select(Payment.id)
        .where(Payment.user_id == user_id, Payment.status.in_(PAID_STATUSES))
        .limit(1)
    )
    return paid is not None


async def check_code(
    *, session: AsyncSession, promo: PromoCode, plan: Plan, user_id: uuid.UUID, now: datetime
) -> None:
    """Raise the refusal that applies to this user using `promo` on `plan` now, if any.

    The limits read here are a courtesy for the preview; a purchase takes its use with the
    conditional updates of `reserve`, which are the real guard."""
    if promo.valid_from is not None and now < promo.valid_from:
        raise PromoCodeNotYetValid(f"This promo code is valid from {promo.valid_from.isoformat()}.")
    if promo.valid_until is not None and now >= promo.valid_until:
        raise PromoCodeExpired()
    if not _covers(promo, plan) or not terms_of(promo).applies_to_currency(plan.currency):
        raise PromoCodeNotForPlan()
    if promo.first_purchase_only and await _has_paid_before(session, user_id):
        raise PromoCodeFirstPurchaseOnly()
    if promo.max_per_user is not None:
        used = await session.scalar(
            select(PromoCodeUser.redeemed).where(
                PromoCodeUser.promo_code_id == promo.id, PromoCodeUser.user_id == user_id
            )
        )
        if (used or 0) >= promo.max_per_user:
            raise PromoCodeAlreadyUsed()
    if promo.max_redemptions is not None and promo.times_redeemed >= promo.max_redemptions:
        raise PromoCodeExhausted()


async def personal_discounts(
    *, session: AsyncSession, user_id: uuid.UUID, plan: Plan, at: datetime
) -> list[PersonalDiscount]:
    """The user's active personal discounts that apply to `plan` at `at`."""
    rows = await session.scalars(
        select(PersonalDiscount)
        .where(
            PersonalDiscount.user_id == user_id,
            PersonalDiscount.active,
            or_(PersonalDiscount.valid_until.is_(None), PersonalDiscount.valid_until > at),
        )
        .order_by(PersonalDiscount.created_at, PersonalDiscount.id)
    )
    return [row for row in rows if _covers(row, plan)]


def _valid_at(discount: PersonalDiscount, moment: datetime) -> bool:
    return discount.valid_until is None or moment < discount.valid_until


def renewal_phases(
    *,
    plan: Plan,
    promo: pricing.Terms | None,
    personal: list[PersonalDiscount],
    start: datetime,
) -> list[RenewalPhase]:
    """What renewals 2, 3, ... cost, grouped into runs of equal price (the last one open)."""
    phases: list[RenewalPhase] = []
    for number in range(2, RENEWAL_LOOKAHEAD + 2):
        begins = period_end(start, unit=plan.period_unit, count=plan.period_count * (number - 1))
        candidates = [promo if promo and promo.lasts_for(number) else None]
        candidates += [terms_of(d) for d in personal if _valid_at(d, begins)]
        price, _ = pricing.best(plan.price_amount, plan.currency, candidates)
        last = phases[-1] if phases else None
        if last is not None and (last.gross, last.discount, last.net) == (
            price.gross,
            price.discount,
            price.net,
        ):
            last.until_period = number
            continue
        phases.append(
            RenewalPhase(
                from_period=number,
                until_period=number,
                gross=price.gross,
                discount=price.discount,
                net=price.net,
            )
        )
    phases[-1].until_period = None
    return phases


async def quote(
    *,
    session: AsyncSession,
    plan: Plan,
    user_id: uuid.UUID,
    promo_code: str | None,
    now: datetime,
) -> Quote:
    """The price of `plan` for `user_id` now, with `promo_code` (refused with its own error when
    the user may not use it) and the user's personal discounts; discounts do not stack: the one
    that lowers the price most applies. A price that cannot be charged is refused."""
    promo = None
    if promo_code is not None and promo_code.strip():
        promo = await find_code(session=session, code=promo_code)
        await check_code(session=session, promo=promo, plan=plan, user_id=user_id, now=now)
    personal = await personal_discounts(session=session, user_id=user_id, plan=plan, at=now)
    promo_terms = terms_of(promo) if promo is not None else None
    candidates = [promo_terms, *(terms_of(d) for d in personal)]
    price, chosen = pricing.best(plan.price_amount, plan.currency, candidates)
    source = None if chosen is None else ("promo_code" if chosen == 0 else "personal_discount")
    renewals = renewal_phases(plan=plan, promo=promo_terms, personal=personal, start=now)
    for net in (price.net, *(phase.net for phase in renewals)):
        if pricing.below_minimum(net, plan.currency):
            raise AmountBelowMinimum(pricing.minimum_message(net, plan.currency))
    return Quote(plan=plan, price=price, promo_code=promo, source=source, renewals=renewals)


def present_quote(q: Quote) -> PriceOut:
    return PriceOut(
        plan_id=q.plan.id,
        currency=q.price.currency,
        gross=q.price.gross,
        discount=q.price.discount,
        net=q.price.net,
        promo_code=q.promo_code.code if q.promo_code is not None else None,
        discount_source=q.source,
        renewals=q.renewals,
    )


# --- what a renewal costs --------------------------------------------------------------------
@dataclass(frozen=True)
class PeriodPrice:
    """What one period of a subscription costs, and the code behind its discount (if a code)."""

    price: pricing.Price
    promo_code: str | None


async def may_discount(
    *, session: AsyncSession, subscriptions: list[Subscription]
) -> set[uuid.UUID]:
    """Of `subscriptions`, those a discount may touch at their next period (a redeemed code, or
    an active personal discount of their user): two queries for a batch of renewals, so that only
    these need `period_price`'s questions — the others cost the full price."""
    if not subscriptions:
        return set()
    ids = [s.id for s in subscriptions]
    redeemed = set(
        await session.scalars(
            select(Redemption.subscription_id).where(
                Redemption.subscription_id.in_(ids), Redemption.status == "confirmed"
            )
        )
    )
    users = set(
        await session.scalars(
            select(PersonalDiscount.user_id).where(
                PersonalDiscount.user_id.in_({s.user_id for s in subscriptions}),
                PersonalDiscount.active,
            )
        )
    )
    return {s.id for s in subscriptions if s.id in redeemed or s.user_id in users}


async def period_price(
    *,
    session: AsyncSession,
    subscription: Subscription,
    period_start: datetime,
    gross: int,
    currency: str,
) -> PeriodPrice:
    """What the subscription's period starting at `period_start` costs — for the renewal job.

    `gross`/`currency`: the period's price before discounts (the renewal job's: the plan's price
    when the renewal is written). The promo code redeemed with the purchase (its terms as they
    were then) discounts as many periods as its duration says — the first paid period is 1 — and
    the user's personal discounts apply while valid at `period_start`; the larger discount wins.
    A discount that would leave a price Stripe cannot charge is skipped for that period."""
    plan = await session.get(Plan, subscription.plan_id)
    paid_before = await session.scalar(
        select(func.count()).where(
            Payment.subscription_id == subscription.id,
            Payment.status.in_(PAID_STATUSES),
            Payment.period_start < period_start,
        )
    )
    number = int(paid_before or 0) + 1
    redemption = await session.scalar(
        select(Redemption).where(
            Redemption.subscription_id == subscription.id, Redemption.status == "confirmed"
        )
    )
    code_terms = terms_of(redemption) if redemption is not None else None
    candidates = [code_terms if code_terms and code_terms.lasts_for(number) else None]
    candidates += [
        terms_of(d)
        for d in await personal_discounts(
            session=session, user_id=subscription.user_id, plan=plan, at=period_start
        )
    ]
    chargeable = [
        terms
        for terms in candidates
        if terms is None or not pricing.apply(gross, currency, terms).below_minimum
    ]
    price, chosen = pricing.best(gross, currency, chargeable)
    by_code = chosen is not None and code_terms is not None and chargeable[chosen] is candidates[0]
    return PeriodPrice(price=price, promo_code=redemption.code if by_code else None)


# --- the admin's view ------------------------------------------------------------------------
async def redemptions(
    *, session: AsyncSession, promo_code_id: uuid.UUID, limit: int, offset: int
) -> tuple[PromoCode | None, list[Redemption], int]:
    """A page of a code's redemptions, newest first, and their total."""
    promo = await session.get(PromoCode, promo_code_id)
    if promo is None:
        return None, [], 0
    total = await session.scalar(
        select(func.count()).where(Redemption.promo_code_id == promo_code_id)
    )
    rows = await session.scalars(
        select(Redemption)
        .where(Redemption.promo_code_id == promo_code_id)
        .order_by(Redemption.created_at.desc(), Redemption.id)
        .limit(limit)
        .offset(offset)
    )
    return promo, list(rows), int(total or 0)
