"""The audit log in the admin: filterable, searchable, never editable (no add, change or delete
here, and the database refuses them anyway)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from audit.log import ReadOnlyModelAdmin
from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyModelAdmin):
    list_display = ["at", "actor", "action", "target_type", "target", "customer_id", "reason"]
    list_filter = ["action", "target_type", "actor", ("at", admin.DateFieldListFilter)]
    search_fields = ["=target_id", "=customer_id", "target_repr", "reason", "actor"]
    date_hierarchy = "at"
    list_per_page = 50
    fields = [
        "at", "actor", "actor_id", "action", "target_type", "target_id", "target_repr",
        "customer_id", "changes_display", "reason",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="target")
    def target(self, entry: AuditEntry) -> str:
        return entry.target_repr or entry.target_id

    @admin.display(description="what changed")
    def changes_display(self, entry: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.changes, indent=2, sort_keys=True))
