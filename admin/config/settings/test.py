"""pytest (pytest-django creates a fresh test_<name> database from ADMIN_DATABASE_URL)."""

import os
import sys

from config.env import database_from_url

from .base import *  # noqa: F403
from .base import BASE_DIR, DATABASES

# The stack's PostgreSQL, from the one source of settings every suite reads (scripts/stack_env.py).
sys.path.insert(0, str(BASE_DIR.parent / "scripts"))
from stack_env import stack_env  # noqa: E402

DATABASES["default"].update(database_from_url(stack_env()["ADMIN_DATABASE_URL"]))

DEBUG = False

SECRET_KEY = "test-only-django-secret-key-not-for-any-deployment-0123456789"

# Tests talk to an in-test billing stand-in with this secret.
SERVICE_JWT_SECRET = "test-service-token-secret-of-32-bytes-or-more"
BILLING_URL = "http://127.0.0.1:9"  # overridden per test by the fake billing server
BILLING_TIMEOUT_SECONDS = 5

# A test database of our own per run (test_cinema_admin_<pid>): engineers and CI share a server.
# UTF-8 whatever the server's default (a cluster made with no locale set is SQL_ASCII).
DATABASES["default"]["TEST"] = {
    "NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}",
    "CHARSET": "UTF8",
    "TEMPLATE": "template0",
}

# Fast password hashing: the suite creates users often.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Static files from the apps' folders, as in development.
WHITENOISE_USE_FINDERS = True
# No collected files in this environment (whitenoise would warn about a missing folder).
STATIC_ROOT = None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
