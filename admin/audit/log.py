"""Writing the audit log: record() for one action, AuditedModelAdmin for catalog edits."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.db import models

from audit.models import AuditEntry

MONEY_ACTIONS = {AuditEntry.Action.REFUND, AuditEntry.Action.RETRY, AuditEntry.Action.END}


class ReasonRequired(ValueError):
    """A money action without a reason: refused before anything is written."""


def record(
    *,
    user,
    action: str,
    target_type: str,
    target_id: Any,
    target_repr: str = "",
    customer_id: uuid.UUID | str | None = None,
    changes: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditEntry:
    """Append one entry. Money actions (refund, retry, end) need a reason."""
    reason = (reason or "").strip()
    if action in MONEY_ACTIONS and not reason:
        raise ReasonRequired(f"A reason is required to {action}.")
    return AuditEntry.objects.create(
        actor=user.get_username(),
        actor_id=user.pk,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        target_repr=str(target_repr)[:255],
        customer_id=customer_id,
        changes=_plain(changes or {}),
        reason=reason,
    )


def _plain(value: Any) -> Any:
    """JSON-safe values: model instances by their str, decimals and UUIDs as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, models.QuerySet):
        return sorted(str(v) for v in value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _snapshot(obj: models.Model) -> dict[str, Any]:
    """The values a manager can edit (many-to-many as sorted names), as JSON-safe values."""
    values: dict[str, Any] = {}
    for field in obj._meta.get_fields():
        if not getattr(field, "editable", False) or getattr(field, "primary_key", False):
            continue
        if field.many_to_many and not field.auto_created:
            values[field.name] = sorted(str(v) for v in getattr(obj, field.name).all())
        elif field.concrete and not field.many_to_many:
            values[field.name] = getattr(obj, field.attname)
    return _plain(values)


class AuditedModelAdmin(admin.ModelAdmin):
    """Records every add, change and delete made through this admin page, with the fields that
    changed (old → new), compared on the stored rows, not the form. A form may carry a
    `change_reason` field; its value is the entry's why."""

    def save_model(self, request, obj, form, change):
        before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change else {}
        super().save_model(request, obj, form, change)
        request._audit_before = before

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Many-to-many fields are saved here, so the entry is written once they are.
        obj, before = form.instance, request._audit_before
        after = _snapshot(obj)
        if change:
            diff = {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
            if not diff:
                return
        else:
            diff = after
        record(
            user=request.user,
            action=AuditEntry.Action.CHANGE if change else AuditEntry.Action.CREATE,
            target_type=self.model._meta.model_name,
            target_id=obj.pk,
            target_repr=str(obj),
            customer_id=getattr(obj, "user_id", None),  # a personal discount names its user
            changes=diff,
            reason=form.cleaned_data.get("change_reason", ""),
        )

    def delete_model(self, request, obj):
        self._record_delete(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._record_delete(request, obj)
        super().delete_queryset(request, queryset)

    def _record_delete(self, request, obj) -> None:
        record(
            user=request.user,
            action=AuditEntry.Action.DELETE,
            target_type=self.model._meta.model_name,
            target_id=obj.pk,
            target_repr=str(obj),
            customer_id=getattr(obj, "user_id", None),
            changes=_snapshot(obj),
        )


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Rows to look at, never to add, change or delete from the admin."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
