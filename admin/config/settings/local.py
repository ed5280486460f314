"""Development (`make up`, runserver): debug pages, development secrets when none are set."""

from config.env import env_bool, env_str

from .base import *  # noqa: F403

# Debug pages are off unless `.env` turns them on (DJANGO_DEBUG=1, development only): Django's
# debug page shows settings and code to anyone who finds a 404.
DEBUG = env_bool("DJANGO_DEBUG", False)

# A development key is fine here; production.py refuses to start without a real one.
SECRET_KEY = env_str(
    "DJANGO_SECRET_KEY", "dev-only-insecure-django-secret-key-change-me-0123456789"
)

# Same development placeholder as .env.example, so tokens match billing's without a .env.
SERVICE_JWT_SECRET = env_str(
    "SERVICE_JWT_SECRET", "change-me-service-token-secret-of-32-bytes-or-more"
)

# Serve static files from the apps' folders, so `collectstatic` is not needed in development.
WHITENOISE_USE_FINDERS = True
# No collected files in this environment (whitenoise would warn about a missing folder).
STATIC_ROOT = None
WHITENOISE_AUTOREFRESH = DEBUG
