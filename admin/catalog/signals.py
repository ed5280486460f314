"""Keep what etl reads truthful: a plan's updated_at moves when its films change, and every
deleted film or plan leaves a tombstone in the deletion log.

Only changes made through Django (admin, shell, commands) pass here; do not edit the catalog
tables with raw SQL.
"""

from __future__ import annotations

from django.db.models.signals import m2m_changed, post_delete, pre_delete
from django.dispatch import receiver
from django.utils import timezone

from catalog.models import DeletionLog, Film, Plan


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
