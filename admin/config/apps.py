from django.contrib.admin.apps import AdminConfig


class CinemaAdminConfig(AdminConfig):
    """django.contrib.admin with our site class as the default `admin.site`."""

    default_site = "config.admin_site.CinemaAdminSite"
