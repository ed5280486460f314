"""The managers' roles, as Django groups. A migration creates them (roles/migrations/0001); after
every `migrate` the groups are given any permission their role covers that appeared since (e.g.
the promo codes' permissions when their model arrives), so a role never lags its models.
Permissions are only added here, never removed: an administrator may extend a group by hand.

* Support — sees customers, their payments and timeline and the audit log; refunds up to
  ADMIN_SUPPORT_REFUND_LIMITS (customers.refund_any_amount lifts the limit); retries a
  subscription's renewal now or ends it (customers.manage_subscription: the same customer care as
  a refund, which may end a subscription too); reads the catalog.
* Catalog manager — films, plans, promo codes: everything of the `catalog` app.
* Administrator — every permission: the dashboard and exports, refunds of any amount, users.
"""

from __future__ import annotations

SUPPORT = "Support"
CATALOG_MANAGER = "Catalog manager"
ADMINISTRATOR = "Administrator"

# "app.codename", "app.*" (every permission of the app) or "*" (every permission).
ROLES: dict[str, tuple[str, ...]] = {
    SUPPORT: (
        "customers.view_customer_billing",
        "customers.issue_refund",
        "customers.manage_subscription",
        "audit.view_auditentry",
        "catalog.view_film",
        "catalog.view_plan",
    ),
    CATALOG_MANAGER: ("catalog.*",),
    ADMINISTRATOR: ("*",),
}


def sync_roles(*, group_model, permission_model) -> None:
    """Create the groups and give each the permissions of its role that exist now."""
    permissions = list(permission_model.objects.select_related("content_type"))
    for name, patterns in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        wanted = [p for p in permissions if _covered(p, patterns)]
        group.permissions.add(*wanted)


def _covered(permission, patterns: tuple[str, ...]) -> bool:
    app = permission.content_type.app_label
    return any(
        pattern == "*" or pattern == f"{app}.*" or pattern == f"{app}.{permission.codename}"
        for pattern in patterns
    )
