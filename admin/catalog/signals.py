"""Keep what etl reads truthful: a plan's (promo code's, personal discount's) updated_at moves
when its films (plans) change, and every deleted film, plan, promo code or personal discount
leaves a tombstone in the deletion log.

Only changes made through Django (admin, shell, commands) pass here; do not edit the catalog
tables with raw SQL.
"""

from __future__ import annotations

from django.db.models.signals import m2m_changed, post_delete, pre_delete
from django.dispatch import receiver
from django.utils import timezone

from catalog.models import DeletionLog, Film, PersonalDiscount, Plan, PromoCode


def _touch_plans(plan_ids) -> None:
    if plan_ids:
        Plan.objects.filter(pk__in=list(plan_ids)).update(updated_at=timezone.now())


@receiver(m2m_changed, sender=Plan.films.through)
def plan_films_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """plan.films.add/remove/set/clear and film.plans.add/... bump the affected plans."""
    if not reverse:
        # instance is a Plan; any change of its film list is a change of the plan.
        if action in {"post_add", "post_remove", "post_clear"}:
            _touch_plans([instance.pk])
        return
    # instance is a Film; pk_set holds plan ids (None on clear: read them before they go).
    if action in {"post_add", "post_remove"}:
        _touch_plans(pk_set)
    elif action == "pre_clear":
        _touch_plans(instance.plans.values_list("pk", flat=True))


@receiver(pre_delete, sender=Film)
def film_about_to_be_deleted(sender, instance: Film, **kwargs) -> None:
    """Deleting a film drops it from its plans' film lists without an m2m signal: bump them."""
    _touch_plans(Plan.objects.filter(films=instance).values_list("pk", flat=True))


@receiver(post_delete, sender=Film)
def film_deleted(sender, instance: Film, **kwargs) -> None:
    DeletionLog.objects.create(model=DeletionLog.Kind.FILM, object_id=instance.pk)


@receiver(post_delete, sender=Plan)
def plan_deleted(sender, instance: Plan, **kwargs) -> None:
    DeletionLog.objects.create(model=DeletionLog.Kind.PLAN, object_id=instance.pk)


def _touch(model, pks) -> None:
    if pks:
        model.objects.filter(pk__in=list(pks)).update(updated_at=timezone.now())


@receiver(m2m_changed, sender=PromoCode.plans.through)
@receiver(m2m_changed, sender=PersonalDiscount.plans.through)
def discount_plans_changed(sender, instance, action, reverse, pk_set, model, **kwargs) -> None:
    """A change of a promo code's (personal discount's) plan list is a change of it."""
    if reverse:  # instance is a Plan; the changed rows are `model`'s
        if action in {"post_add", "post_remove"}:
            _touch(model, pk_set)
        elif action == "pre_clear":
            related = "promo_codes" if model is PromoCode else "personal_discounts"
            _touch(model, getattr(instance, related).values_list("pk", flat=True))
        return
    if action in {"post_add", "post_remove", "post_clear"}:
        _touch(type(instance), [instance.pk])


@receiver(pre_delete, sender=Plan)
def plan_about_to_be_deleted(sender, instance: Plan, **kwargs) -> None:
    """Deleting a plan drops it from discounts' plan lists without an m2m signal: bump them."""
    _touch(PromoCode, instance.promo_codes.values_list("pk", flat=True))
    _touch(PersonalDiscount, instance.personal_discounts.values_list("pk", flat=True))


@receiver(post_delete, sender=PromoCode)
def promo_code_deleted(sender, instance: PromoCode, **kwargs) -> None:
    DeletionLog.objects.create(model=DeletionLog.Kind.PROMO_CODE, object_id=instance.pk)


@receiver(post_delete, sender=PersonalDiscount)
def personal_discount_deleted(sender, instance: PersonalDiscount, **kwargs) -> None:
    DeletionLog.objects.create(model=DeletionLog.Kind.PERSONAL_DISCOUNT, object_id=instance.pk)
