"""Production: every secret required, HTTPS cookies, hashed static files from `collectstatic`."""

from config.env import env_bool, env_int, env_str

from .base import *  # noqa: F403

DEBUG = False

# Required: refuse to start without real secrets.
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
SERVICE_JWT_SECRET = env_str("SERVICE_JWT_SECRET")

# The admin runs behind a TLS-terminating proxy that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Redirect plain HTTP to HTTPS (turn off when the proxy already does it).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Cookies only over HTTPS, never read by scripts.
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
# HSTS lifetime in seconds (0 disables it): a year, subdomains included.
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_CONTENT_TYPE_NOSNIFF = True

# `python admin/manage.py collectstatic` writes hashed, compressed files that whitenoise serves.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
