"""Settings shared by every environment; each value comes from the environment when it varies.

local.py (development, `make up`), test.py (pytest) and production.py extend this module.
"""

from __future__ import annotations

from pathlib import Path

from config.env import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_money_limits,
)

# admin/ — the folder that holds manage.py.
BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Signs sessions and CSRF tokens. Required in production; local/test set a development value.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")

# Never True outside development: tracebacks would leak to managers' browsers.
DEBUG = False

# Host names this admin answers to (comma-separated), e.g. "admin.cinema.example".
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

# Origins trusted for CSRF on HTTPS behind a proxy (comma-separated, with scheme).
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # Our AdminSite (adds the customers pages to the admin's menu) instead of django.contrib.admin.
    "config.apps.CinemaAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles, so runserver serves static files the way gunicorn does.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "catalog",
    "customers",
    "audit",
    "reports",
    # After auth and every app with permissions: its post_migrate gives the roles new ones.
    "roles",
    # Login lockout after repeated failures (django-axes); the Content-Security-Policy header.
    "axes",
    "csp",
]

MIDDLEWARE = [
    # Liveness and readiness probes, before host checks and the HTTPS redirect.
    "config.views.HealthCheckMiddleware",
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's CSS/JS from the Python process (gunicorn has no static file server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: it answers a locked-out login attempt.
    "axes.middleware.AxesMiddleware",
]

# --- Security --------------------------------------------------------------------------------
# django-axes first: it refuses a locked-out user/IP before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed logins allowed, per (username, IP) and per IP, before a lockout (axes logs each failure
# and the lockout as warnings; attempts are rows in the admin DB, seen in the admin's Axes pages).
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
# Hours a lockout lasts.
AXES_COOLOFF_TIME = env_int("ADMIN_LOGIN_COOLOFF_HOURS", 1)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
# Reset the counter of a user/IP on a successful login.
AXES_RESET_ON_SUCCESS = True
# Behind the proxy, the client's address is the last X-Forwarded-For hop it added.
AXES_IPWARE_PROXY_COUNT = env_int("ADMIN_PROXY_COUNT", 0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]

# Content-Security-Policy (django-csp): only our own scripts, styles and images; never framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # The Django admin sets a few style attributes of its own.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The admin's own database (films, plans, deletion log, users). Read by etl, never by billing.
DATABASES = {
    "default": {
        **database_from_url(
            env_str("ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cinema_admin")
        ),
        # Seconds a connection is kept between requests (0 = a new one per request).
        "CONN_MAX_AGE": env_int("ADMIN_DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Stored times are UTC; the admin shows them in this zone.
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` puts files for whitenoise in production.
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))

# billing's base URL: the customers pages read payments and post refunds there.
BILLING_URL = env_str("BILLING_URL", "http://127.0.0.1:8001")
# HS256 secret of service tokens (iss=admin, aud=billing). Required in production.
SERVICE_JWT_SECRET = env_str("SERVICE_JWT_SECRET", "")
# Seconds to wait for billing before telling the manager it is unavailable.
BILLING_TIMEOUT_SECONDS = env_int("ADMIN_BILLING_TIMEOUT_SECONDS", 10)

# The SMTP relay the admin's mail goes through (the same SMTP_* settings as docker-compose's);
# no SMTP_HOST = mail is written to the log. SMTP_FROM is the sender of every message.
SMTP_HOST = env_str("SMTP_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if SMTP_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = SMTP_HOST or "localhost"
EMAIL_PORT = env_int("SMTP_PORT", 587)
EMAIL_HOST_USER = env_str("SMTP_USERNAME", "")
EMAIL_HOST_PASSWORD = env_str("SMTP_PASSWORD", "")
# STARTTLS after connecting (port 587); the relay's certificate is checked.
EMAIL_USE_TLS = env_bool("SMTP_STARTTLS", True)
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env_str("SMTP_FROM", "cinema-billing@localhost")

# The most a user with customers.issue_refund but not customers.refund_any_amount (the Support
# role) may refund per payment, in each currency's units: "usd:50,eur:50,jpy:5000". A currency not
# listed cannot be refunded by support at all (an administrator does it).
SUPPORT_REFUND_LIMITS = parse_money_limits(
    env_str("ADMIN_SUPPORT_REFUND_LIMITS", "usd:50,eur:50,gbp:50,chf:50,jpy:5000")
)

# One JSON object per line on stdout (collected by the process manager), with the request id.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "config.logging.json_formatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per call to billing is noise; failures are shown to the manager and logged.
        "httpx": {"level": "WARNING"},
    },
}
