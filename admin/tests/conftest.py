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
