"""The admin site managers log in to at /admin/."""

from __future__ import annotations

from django.contrib import admin


class CinemaAdminSite(admin.AdminSite):
    site_header = "Cinema Billing"
    site_title = "Cinema Billing admin"
    index_title = "Catalog and customers"
