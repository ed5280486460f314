"""The admin site managers log in to at /admin/: Django's, plus the customers pages."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path, re_path, reverse


class CinemaAdminSite(admin.AdminSite):
    site_header = "Cinema Billing"
    site_title = "Cinema Billing admin"
    index_title = "Catalog and customers"
    # The home page: the dashboard (for those who may see it) above Django's app list.
    index_template = "admin/cinema_index.html"

    def index(self, request, extra_context=None):
        from reports.views import dashboard_context  # imported late: the views use this site

        context = dict(extra_context or {})
        if request.user.has_perm("reports.view_dashboard"):
            context.update(show_dashboard=True, **dashboard_context(request))
        return super().index(request, extra_context=context)

    def get_urls(self):
        # Imported late: the views use this site.
        from customers import views
        from reports import views as reports

        custom = [
            path("customers/", self.admin_view(views.customer_lookup), name="customers"),
            path(
                "customers/<uuid:user_id>/timeline/",
                self.admin_view(views.customer_timeline),
                name="customers_timeline",
            ),
            path(
                "customers/payments/<uuid:payment_id>/",
                self.admin_view(views.payment_detail),
                name="customers_payment",
            ),
            path(
                "customers/payments/<uuid:payment_id>/refund/",
                self.admin_view(views.refund_payment),
                name="customers_refund",
            ),
            path(
                "customers/subscriptions/<uuid:subscription_id>/<str:action>/",
                self.admin_view(views.subscription_action),
                name="customers_subscription",
            ),
            re_path(
                r"^reports/export/(?P<name>payments|refunds)\.csv$",
                self.admin_view(reports.export_csv),
                name="reports_export",
            ),
        ]
        return custom + super().get_urls()

    def get_app_list(self, request, app_label=None):
        """Django's app list plus a "Customers" entry for the billing pages."""
        app_list = super().get_app_list(request, app_label)
        if app_label in (None, "customers") and request.user.has_perm(
            "customers.view_customer_billing"
        ):
            url = reverse("admin:customers", current_app=self.name)
            app_list.append(
                {
                    "name": "Customers",
                    "app_label": "customers",
                    "app_url": url,
                    "has_module_perms": True,
                    "models": [
                        {
                            "name": "Payments, subscriptions and refunds",
                            "object_name": "CustomerBilling",
                            "admin_url": url,
                            "add_url": None,
                            "view_only": True,
                            "perms": {"view": True},
                        }
                    ],
                }
            )
        return app_list
