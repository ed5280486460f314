"""Makes `pytest admin/tests` work from anywhere, also together with other suites (then no
admin/pytest.ini applies): admin/ on sys.path and the test settings."""

import os
import sys
from pathlib import Path

ADMIN_DIR = Path(__file__).resolve().parent.parent
if str(ADMIN_DIR) not in sys.path:
    sys.path.insert(0, str(ADMIN_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

# Without admin/pytest.ini (e.g. `pytest admin/tests etl/tests`) pytest-django has not set Django
# up yet; do it before the test modules import models (a no-op when it already has).
import django  # noqa: E402
import pytest  # noqa: E402

django.setup()


@pytest.fixture
def manager(db, django_user_model):
    """A logged-in-able superuser (managers in production are superusers or staff)."""
    return django_user_model.objects.create_superuser("manager", "m@example.com", "pw-manager-1")


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def billing(settings):
    """A stand-in of billing's internal API (tests/fake_billing_admin.py) the admin talks to."""
    from fake_billing_admin import FakeBilling

    fake = FakeBilling(settings.SERVICE_JWT_SECRET)
    settings.BILLING_URL = fake.url
    yield fake
    fake.close()


@pytest.fixture
def as_role(client, django_user_model):
    """as_role("Support") → a client logged in as a staff user whose only role is that group."""
    from django.contrib.auth.models import Group

    def login(role: str):
        user = django_user_model.objects.create_user(
            role.lower().replace(" ", "_"), password="pw-role-1", is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return login
