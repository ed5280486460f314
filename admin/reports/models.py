"""No data lives here: the figures are billing's (read through its report endpoints). This
unmanaged model only carries the permissions of the dashboard and the exports."""

from django.db import models


class Report(models.Model):
    class Meta:
        managed = False  # no table
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can view the revenue dashboard"),
            ("export_data", "Can export payments and refunds as CSV"),
        ]
