"""Create the managers' first login from ADMIN_USERNAME / ADMIN_PASSWORD. Idempotent: an existing
user keeps its row and is made an active superuser with that password."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create or update the superuser named by ADMIN_USERNAME with ADMIN_PASSWORD."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", help="default: $ADMIN_USERNAME, else 'admin'")
        parser.add_argument("--password", help="default: $ADMIN_PASSWORD (required)")
        parser.add_argument("--email", default=os.environ.get("ADMIN_EMAIL", ""))

    def handle(self, *args, username=None, password=None, email="", **options) -> None:
        username = username or os.environ.get("ADMIN_USERNAME") or "admin"
        password = password or os.environ.get("ADMIN_PASSWORD")
        if not password:
            raise CommandError("Set ADMIN_PASSWORD (or pass --password).")

        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            user_model.objects.create_superuser(username=username, email=email, password=password)
            self.stdout.write(f"superuser {username!r}: created")
            return

        changed = []
        for flag in ("is_superuser", "is_staff", "is_active"):
            if not getattr(user, flag):
                setattr(user, flag, True)
                changed.append(flag)
        if not user.check_password(password):
            user.set_password(password)
            changed.append("password")
        if changed:
            user.save()
        self.stdout.write(
            f"superuser {username!r}: "
            + (f"updated ({', '.join(changed)})" if changed else "unchanged")
        )
