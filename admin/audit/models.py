"""The audit log: one row per manager action, append-only. Rows are written through
audit.log.record(); the database refuses UPDATE, DELETE and TRUNCATE of the table (a trigger,
migration 0001), so not even a bug or a shell can rewrite history."""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        REFUND = "refund", "refund"
        CREATE = "create", "create"
        CHANGE = "change", "change"
        DELETE = "delete", "delete"
        RETRY = "retry", "retry a subscription's payment"
        END = "end", "end a subscription"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Who: the manager's username and id as they were (a later rename or deletion of the user
    # does not rewrite the log, hence no foreign key).
    actor = models.CharField(max_length=150, db_index=True)
    actor_id = models.BigIntegerField(null=True)
    action = models.CharField(max_length=16, choices=Action.choices, db_index=True)
    # What: e.g. "plan" + its id, "payment" + billing's payment id.
    target_type = models.CharField(max_length=64, db_index=True)
    target_id = models.CharField(max_length=64, db_index=True)
    target_repr = models.CharField(max_length=255, blank=True)
    # The cinema user concerned (refunds, subscriptions): the customer's timeline shows these.
    customer_id = models.UUIDField(null=True, blank=True, db_index=True)
    # What changed: {"field": [old, new]} for edits, the request's figures for money actions.
    changes = models.JSONField(default=dict, blank=True)
    # Why: required for money actions (audit.log.record refuses them without one).
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(action__in=["refund", "retry", "end"]) | ~models.Q(reason=""),
                name="audit_money_action_has_reason",
            )
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target_type} {self.target_repr or self.target_id}"
