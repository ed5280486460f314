from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync(sender, **kwargs) -> None:
    from django.contrib.auth.models import Group, Permission

    from roles.definitions import sync_roles

    sync_roles(group_model=Group, permission_model=Permission)


class RolesConfig(AppConfig):
    name = "roles"
    verbose_name = "Roles"

    def ready(self) -> None:
        # After every app's permissions are made (auth's own post_migrate handler runs first:
        # django.contrib.auth comes before roles in INSTALLED_APPS).
        post_migrate.connect(_sync, sender=self, dispatch_uid="roles.sync")
