"""No data lives here: a customer's payments, subscriptions and refunds are billing's and are read
through its internal API (customers/billing.py). This unmanaged model only carries the
permissions that the admin's users and groups can be given."""

from django.db import models


class CustomerBilling(models.Model):
    class Meta:
        managed = False  # no table
        default_permissions = ()
        permissions = [
            ("view_customer_billing", "Can view customers' payments, subscriptions and refunds"),
            ("issue_refund", "Can refund customers' payments"),
            # Without it, a refund is limited to ADMIN_SUPPORT_REFUND_LIMITS (support's role).
            ("refund_any_amount", "Can refund any amount (no support limit)"),
            # Retry a subscription's renewal now, or end the subscription now.
            ("manage_subscription", "Can retry a subscription's renewal or end it"),
        ]
        verbose_name = "customer billing"
