"""
Switchyard settings, read from the environment (12-factor).

Every tunable is named here once, with its default. The defaults are those of
a safe production deployment except where a first run needs otherwise:
DATABASE_URL falls back to an SQLite file under var/ and the Celery broker to
kombu's filesystem transport, so `make run` needs no external service.
"""

import hmac as _hmac
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from kombu import Exchange as _Exchange
from kombu import Queue as _Queue

from core.crypto import encryption_keys as _encryption_keys

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else a random key kept in var/ (one per checkout, never in git)."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS: on unless told otherwise (DEBUG or HTTPS_ONLY=false for plain-http development and tests).
HTTPS_ONLY = env.bool("HTTPS_ONLY", default=not DEBUG)
SECURE_SSL_REDIRECT = HTTPS_ONLY
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if HTTPS_ONLY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = HTTPS_ONLY
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_PROXY", default=False) else None
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Browser features no page of the hub uses, switched off for all of them (core/security.py).
PERMISSIONS_POLICY_DENY = [
    "accelerometer", "autoplay", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer",
    "microphone", "midi", "payment", "usb", "xr-spatial-tracking",
]  # fmt: skip

# --- Content-Security-Policy (django-csp), chosen by path in core/security.py. Admin pages: nothing
# inline — their scripts and styles are static files (static/switchyard/).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}
# JSON answers are never documents to render.
API_CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}}
# Swagger UI (drf-spectacular's split view: its init script is a file too) styles its widgets inline.
DOCS_CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        **CONTENT_SECURITY_POLICY["DIRECTIVES"],
        "style-src": ["'self'", "'unsafe-inline'"],
    }
}

# --- Admin login throttle (django-axes): AXES_FAILURE_LIMIT failed logins for one username from one
# address lock that pair out for AXES_COOLOFF_MINUTES; `manage.py axes_reset_username <name>` (or
# axes_reset_ip, axes_reset) lifts it early. Other users and addresses are unaffected.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Tries during a lockout do not extend it, so the wait the lockout page announces holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "admin/lockout.html"
# The API's notion of the client address: X-Forwarded-For only when BEHIND_PROXY (its right-most entry,
# the one our proxy wrote). django-ipware, which axes' AXES_IPWARE_* settings need, is not installed.
AXES_CLIENT_IP_CALLABLE = "api.authentication.client_ip"
# Axes masks the username and address in its log lines by default; support needs them to unlock. Passwords
# are always masked.
AXES_SENSITIVE_PARAMETERS: list[str] = []

INSTALLED_APPS = [
    "console.apps.SwitchyardAdminConfig",  # django.contrib.admin with the dashboard (console/site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "guardian",
    "django_celery_beat",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    "simple_history",
    "organizations",
    "integrations",
    "tokens",
    "inventory",
    "orders",
    "automations",
    "console",
    "api",
]

MIDDLEWARE = [
    # First, so that every answer carries X-Request-Id and everything below logs under it.
    "core.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # A database outage answers 503 (API error shape or a plain page), not Django's 500 page.
    "core.middleware.DatabaseUnavailableMiddleware",
    "core.security.PermissionsPolicyMiddleware",
    "core.security.PolicyByPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The admin user of a request becomes the history_user of the configuration changes it makes.
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Inside the header middlewares, so that its 400/404/413 carry their headers; before any view runs.
    "core.security.RequestGuardMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as axes' docs say: turns a lockout into the lockout page
]

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

# --- Database: PostgreSQL (psycopg 3) in production and tests; SQLite under var/ for a first run.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'switchyard.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions let the web server, worker and beat share one file without
    # "database is locked" on concurrent writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # SQLite cannot build the NULLS NOT DISTINCT unique constraints (one open exception per cause, one buffer
    # per scope); the code dedupes on its own, and PostgreSQL — production and the tests — enforces them.
    SILENCED_SYSTEM_CHECKS = ["models.W047"]
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Seconds to wait for a PostgreSQL connection: an unreachable server answers 503 (core/middleware.py)
    # this soon instead of holding the request (libpq's default is to wait forever).
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int(
        "DB_CONNECT_TIMEOUT", default=5
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Shared cache (rate limits, task doorbells): Redis when REDIS_URL is set.
REDIS_URL = env.str("REDIS_URL", default="")
# Seconds a cache call waits on Redis (connect, then each answer). The rate limit and the doorbells carry on
# without the cache (api/throttling.py, config/celery.py): a dead Redis must cost requests little.
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", default=1.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT},
        }
    }
else:
    CACHES = {
        "default": {
            # Django's file cache with atomic add and incr across processes (core/cache.py).
            "BACKEND": "core.cache.LockedFileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

AUTHENTICATION_BACKENDS = [
    # First: axes' lockout check, refusing a locked-out login before any password check (core/security.py).
    "core.security.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# Guardian's database "AnonymousUser" is not used: anonymous visitors never hold object permissions.
ANONYMOUS_USER_NAME = None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT.mkdir(exist_ok=True)
# Serve app static files straight from their packages unless collectstatic has been run for production.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# --- E-mail: EMAIL_URL (e.g. smtp+tls://user:pass@host:587); printed to the console by default.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Switchyard <switchyard@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The hub's public address, for absolute links in e-mails (exception digests); empty: links are paths.
SITE_URL = env.str("SITE_URL", default="")

# --- Celery: Redis in production and tests; a folder under var/ as broker for a zero-service first run.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
# Seconds to connect to the broker (each attempt; a worker keeps retrying, a publish does not).
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_TIMEOUT", default=2.0)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery" / "broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        # Publishing (core.queue.enqueue) must not wait on a broker that is down: one connection attempt,
        # no retries (kombu would otherwise retry for CELERY_BROKER_CONNECTION_TIMEOUT seconds per publish);
        # the work is in the database and a beat sweep rings for it. The worker's own reconnect loop passes
        # its own retry settings and is unaffected.
        "max_retries": 0,
        "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=10.0),
    }
# Webhook deliveries have a queue of their own, which every worker consumes beside the default one (kombu
# takes from the queues in turn): behind one queue, a backlog of routing work after an outage held the
# deliveries of the events already made for minutes (bench/load.py). A worker started with
# `-Q deliveries` serves deliveries alone, for deployments that scale them apart.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = tuple(
    _Queue(name, _Exchange(name), routing_key=name) for name in ("celery", "deliveries")
)
CELERY_TASK_ROUTES = {
    f"integrations.tasks.{name}": {"queue": "deliveries"}
    for name in ("dispatch_outbox_task", "deliver_due_task", "sweep_deliveries_task")
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# --- Integrations
# How long an integration may stay `connecting` without a handshake or a passing health check.
INTEGRATION_CONNECT_WINDOW = env.int("INTEGRATION_CONNECT_WINDOW", default=24 * 3600)  # seconds
# Consecutive failed outbound calls or deliveries that move a connected integration to `error`.
INTEGRATION_FAILURE_THRESHOLD = env.int("INTEGRATION_FAILURE_THRESHOLD", default=10)
# Webhook and manifest URLs on loopback/private networks are refused unless this is true.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
# Outbound HTTP (webhook deliveries and manifest calls), docs/connectors/contract.md, "Webhook deliveries":
# seconds.
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=15.0)
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=5.0)
# A worker claims up to this many due deliveries at once and sends them over this many pooled connections.
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=100)
WEBHOOK_CONCURRENCY = env.int("WEBHOOK_CONCURRENCY", default=16)
# Seconds a claimed delivery stays reserved to its worker; a killed worker's claims are due again after it.
# Must exceed the longest batch: (BATCH_SIZE / CONCURRENCY) × (TIMEOUT + CONNECT_TIMEOUT).
WEBHOOK_DELIVERY_LEASE = env.int("WEBHOOK_DELIVERY_LEASE", default=180)
# A subscription whose deliveries have done nothing but fail for this long is switched off
# (docs/connectors/contract.md, "Webhook deliveries").
WEBHOOK_DISABLE_AFTER_DAYS = env.float("WEBHOOK_DISABLE_AFTER_DAYS", default=5)
# Succeeded deliveries (and dispatched outbox rows) are pruned after this many days.
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=14)
# Events as each integration was told of them (the catch-up feed, GET /api/v1/webhook-events) are kept this
# many days, then pruned daily; at least 7 (issue 16): a connector down for a week still recovers.
WEBHOOK_EVENT_RETENTION_DAYS = max(7, env.int("WEBHOOK_EVENT_RETENTION_DAYS", default=30))
# The request log (one integration event per API request) is pruned after this many days, daily.
REQUEST_LOG_RETENTION_DAYS = env.int("REQUEST_LOG_RETENTION_DAYS", default=30)
# Characters of a response body kept on the delivery and its attempt.
WEBHOOK_RESPONSE_EXCERPT = env.int("WEBHOOK_RESPONSE_EXCERPT", default=1000)
# Webhook subscriptions one integration may hold (#14): each event fans out once per subscription.
WEBHOOK_MAX_SUBSCRIPTIONS = env.int("WEBHOOK_MAX_SUBSCRIPTIONS", default=20)
# Hours a rotated-out signing secret keeps signing beside the new one, unless the rotation asks otherwise
# (POST /api/v1/webhooks/{id}/rotate-secret, `overlap_hours`), and the most a rotation may ask for.
WEBHOOK_SECRET_OVERLAP_HOURS = env.int("WEBHOOK_SECRET_OVERLAP_HOURS", default=24)
WEBHOOK_SECRET_OVERLAP_MAX_HOURS = env.int("WEBHOOK_SECRET_OVERLAP_MAX_HOURS", default=168)
# --- Engines (automations/engines/): they react on commit; their beat sweeps are the safety net.
# Orders (per organization and category) one sweep handles; the next beat run takes the rest.
ENGINE_SWEEP_BATCH = env.int("ENGINE_SWEEP_BATCH", default=500)
# Seconds after which a new or ready order no engine touched counts as having lost its message.
ENGINE_LOST_MESSAGE_SECONDS = env.int("ENGINE_LOST_MESSAGE_SECONDS", default=30)
# The inventory engine: change rows drained per transaction, transactions per run (then it re-enqueues
# itself), and PostgreSQL work_mem for its one recompute statement (sorts 5M rows in memory at full scale).
INVENTORY_DRAIN_BATCH = env.int("INVENTORY_DRAIN_BATCH", default=10_000)
INVENTORY_MAX_ROUNDS = env.int("INVENTORY_MAX_ROUNDS", default=10)
INVENTORY_SYNC_WORK_MEM = env.str("INVENTORY_SYNC_WORK_MEM", default="256MB")
# Rule runs (the automation rules' log) and resolved or dismissed exceptions are deleted after these days.
RULE_RUN_RETENTION_DAYS = env.int("RULE_RUN_RETENTION_DAYS", default=30)
EXCEPTION_RETENTION_DAYS = env.int("EXCEPTION_RETENTION_DAYS", default=90)
# Request bodies over this many bytes answer 413 payload_too_large (core/security.py). The largest legit
# body, 5,000 stock levels or 1,000 products at their longest, is about 1.5 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=5 * 1024 * 1024)
# Per-key API rate limit, "<count>/<sec|min|hour>".
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="1200/min")
# Per client address, for API requests made without a key or with one refused (api/throttling.py).
API_ANON_RATE_LIMIT = env.str("API_ANON_RATE_LIMIT", default="60/min")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Each record names the request it was written for (X-Request-Id, "-" outside a request).
    "filters": {"request_id": {"()": "core.request_id.RequestIdLogFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # httpx logs every outbound request URL at INFO: webhook URLs may carry tokens, and the attempt log has it all.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

# --- API keys
# Peppers that key the HMAC of API key secrets, "id:secret" pairs (comma-separated); the highest id hashes
# new keys, older ids keep verifying (and are re-hashed on use) until removed. Default: derived from SECRET_KEY.
API_KEY_PEPPERS = {
    int(pid): pepper
    for pid, _, pepper in (item.partition(":") for item in env.list("API_KEY_PEPPERS", default=[]))
} or {1: _hmac.new(SECRET_KEY.encode(), b"switchyard-api-key-pepper", "sha256").hexdigest()}

# --- Encryption at rest (secret integration settings, signing secrets; core/crypto.py)
# Fernet keys, comma-separated: the first encrypts, all decrypt; a malformed one stops startup. Unset: one
# key derived from SECRET_KEY, so changing SECRET_KEY would make the stored secrets unreadable: production
# sets its own (rotation: README, `manage.py rotate_encryption_keys --help`).
ENCRYPTION_KEYS = _encryption_keys(env.list("ENCRYPTION_KEYS", default=[]), SECRET_KEY)

# last_used_at/last_used_ip are written at most this often per key (seconds).
API_KEY_LAST_USED_INTERVAL = env.int("API_KEY_LAST_USED_INTERVAL", default=60)
# Default grace period of a rotated key (hours) and how early expiry warnings go out (days).
API_KEY_ROTATION_GRACE_HOURS = env.int("API_KEY_ROTATION_GRACE_HOURS", default=24)
API_KEY_EXPIRY_WARNING_DAYS = env.int("API_KEY_EXPIRY_WARNING_DAYS", default=7)
# Idempotency-Key responses are kept this long (hours; the IETF draft asks for at least 24).
IDEMPOTENCY_TTL_HOURS = env.int("IDEMPOTENCY_TTL_HOURS", default=24)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.BearerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.GrantPermission"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.KeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard connector API",
    "DESCRIPTION": (
        "The contract connectors are written against (docs/connectors/contract.md in the repository, "
        "with the connector guide beside it). Errors share one shape."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Several lists have a `status`: each choice set keeps the name of its lifecycle.
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "integrations.choices.DeliveryStatus",
        "EventTypeEnum": "integrations.choices.EventType.values",  # api/schema_fields.EventTypeField
        "IntegrationStatusEnum": "integrations.choices.IntegrationStatus",
    },
    # 3.1: the `webhooks` section, one entry per event type with its envelope (api/webhook_schema.py).
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": "api.webhook_schema.WEBHOOKS",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "api.schema.postprocess"],
}
