"""Settings: every knob comes from the environment, with defaults that run on a laptop."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers as default_cors_headers
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """Return the environment variable `name`, or `default` when unset or empty."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable."""
    return env(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """Read an integer environment variable."""
    return int(env(name, str(default)))


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma separated environment variable."""
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def stored_secret_key(path: Path) -> str:
    """The key in `path`, made once with mode 600 if missing (so restarts keep tokens valid)."""
    if not path.exists():
        # Write a private temp file, then link it into place: when the server and the
        # worker start together, exactly one key wins and nobody reads a half-written file.
        key = secrets.token_urlsafe(50)
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return path.read_text().strip()


PRODUCTION = env_bool("DJANGO_PRODUCTION")
if PRODUCTION and not env("DJANGO_SECRET_KEY"):
    raise ImproperlyConfigured("DJANGO_PRODUCTION is set: DJANGO_SECRET_KEY must be set too.")
DEBUG = env_bool("DJANGO_DEBUG") and not PRODUCTION
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    # Every refresh token is recorded, so a used one, or all of a user's, can be revoked.
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_eventstream",
    "django_tasks",
    "django_tasks_db",
    "tasks_app",
]

MIDDLEWARE = [
    # First, so it sees every response last: no-store on the API, CSP, Retry-After on 429.
    "project.middleware.ResponseHeadersMiddleware",
    # Gzip for JSON answers (never those carrying tokens or tickets); streams compress themselves.
    "tasks_app.api.compression.ApiGZipMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# SecurityMiddleware and XFrameOptionsMiddleware send these on every response (Django's defaults,
# spelled out because the API promises them).
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Seconds a client is told to wait (Retry-After) on a 429 whose view did not say.
RETRY_AFTER_SECONDS = env_int("RETRY_AFTER_SECONDS", 5)

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# Embedded default: one SQLite file under var/. DATABASE_URL switches to PostgreSQL.
DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)
# No key is ever written in the code: without DJANGO_SECRET_KEY a random one is kept in DATA_DIR.
SECRET_KEY = env("DJANGO_SECRET_KEY") or stored_secret_key(DATA_DIR / "secret_key")
# A connection is kept between requests for up to DB_CONN_MAX_AGE seconds, checked before it is
# reused: a web process runs requests on a fixed set of threads (WEB_REQUEST_THREADS), so it
# holds at most one connection per thread, and opening one per request cost a third of a short
# API request's time.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker and the server write the same file: wait for the lock instead of failing,
    # and take the write lock up front so two writers never deadlock on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME") or None}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(DATA_DIR / "media")))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUDIO_MAX_UPLOAD_BYTES = env_int("AUDIO_MAX_UPLOAD_MB", 500) * 1024 * 1024
# The server (project/server.py) answers 413 to any request body past this, while it arrives;
# the margin is room for the multipart headers around the file.
REQUEST_BODY_MAX_BYTES = AUDIO_MAX_UPLOAD_BYTES + 64 * 1024
# Slow clients are cut (project/server.py): headers must arrive in time, a body must keep moving,
# and request line plus headers have a size limit (431 past it).
REQUEST_HEADER_TIMEOUT_SECONDS = float(env("REQUEST_HEADER_TIMEOUT_SECONDS", "30"))
REQUEST_BODY_TIMEOUT_SECONDS = float(env("REQUEST_BODY_TIMEOUT_SECONDS", "30"))
REQUEST_BODY_MIN_BYTES_PER_SECOND = env_int("REQUEST_BODY_MIN_BYTES_PER_SECOND", 1024)
REQUEST_HEADERS_MAX_BYTES = env_int("REQUEST_HEADERS_MAX_BYTES", 64 * 1024)
# Threads of a web process for requests' synchronous code (views, database), started once and
# shared, each request on the least busy (tasks_app/streams/seam.py: RequestThreads). Streams
# need none; a request waiting for its turn holds no thread.
WEB_REQUEST_THREADS = env_int("WEB_REQUEST_THREADS", 8)
# Non-stream requests a web process takes on at once (on those threads or waiting for one); past
# it a request is answered 503 with Retry-After at once, so a burst past what the process can
# serve costs bounded memory and drains in seconds instead of piling up (see
# tasks_app/streams/seam.py: StreamingASGIHandler).
WEB_MAX_REQUESTS_IN_FLIGHT = env_int("WEB_MAX_REQUESTS_IN_FLIGHT", 256)
# Bounds on decoded work, checked at upload: a small file can decode to hours of samples.
AUDIO_MAX_DURATION_SECONDS = float(env("AUDIO_MAX_DURATION_SECONDS", str(6 * 3600)))
AUDIO_MAX_SAMPLES = env_int("AUDIO_MAX_SAMPLES", 1_000_000_000)
# Storage each user may fill with uploads and task outputs, and the largest output one task may
# write (MiB; 0 = no limit). See tasks_app/quota.py.
STORAGE_QUOTA_MB = env_int("STORAGE_QUOTA_MB", 5120)
TASK_OUTPUT_MAX_MB = env_int("TASK_OUTPUT_MAX_MB", 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tasks_app.api.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "tasks_app.api.pagination.StandardPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tasks_app.api.exceptions.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "tasks_app.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
    # A refresh gives a new refresh token and spends the old one (a used one gets 401), so a
    # stolen refresh token is good once at most, and the theft shows when the owner refreshes.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    # Tokens carry a hash of the password hash: a password change ends every access token too.
    "CHECK_REVOKE_TOKEN": True,
}

SPECTACULAR_SETTINGS = {
    # Swagger UI's files ship in a package, so /docs works with no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TITLE": "Audio tasks API",
    "DESCRIPTION": "Upload audio, run processing tasks and watch their progress live over SSE.",
    "VERSION": "1.0.0",
    # 3.1 (JSON Schema 2020-12): the SSE event schema types each event's JSON `data` with
    # contentMediaType / contentSchema, which 3.0 does not allow.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        # SSE first, so the enum hook also sees the components it adds.
        "tasks_app.api.schema.add_sse_endpoints",
        "tasks_app.api.schema.forbid_unknown_fields",
        "tasks_app.api.schema.add_links",
        "drf_spectacular.hooks.postprocess_schema_enums",
    ],
}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# SSE: every event is kept in the database log (django-eventstream's tables), so a client
# can resume with Last-Event-ID; live events reach streams without reading it.
REDIS_URL = env("EVENTSTREAM_REDIS")
if REDIS_URL:
    # Cross-process fan-out: whole events over Redis pub/sub.
    from redis.connection import parse_url

    EVENTSTREAM_REDIS = parse_url(REDIS_URL)
SSE_REDIS_CHANNEL = env("SSE_REDIS_CHANNEL", "events_channel")
SSE_MAX_STREAMS_PER_USER = env_int("SSE_MAX_STREAMS_PER_USER", 20)
SSE_KEEPALIVE_SECONDS = float(env("SSE_KEEPALIVE_SECONDS", "15"))
# How often a server reads the log's newest rows: the embedded default's path from the
# worker to the streams, and (SSE_REDIS_POLL_SECONDS) the safety net behind Redis.
SSE_POLL_SECONDS = float(env("SSE_POLL_SECONDS", "0.05"))
SSE_REDIS_POLL_SECONDS = float(env("SSE_REDIS_POLL_SECONDS", "1"))
SSE_DB_THREADS = env_int("SSE_DB_THREADS", 4)
# Run streams and uploads on the server's public APIs only (see tasks_app/streams/seam.py).
SSE_PUBLIC_APIS_ONLY = env_bool("SSE_PUBLIC_APIS_ONLY")
# /healthz reports the stream hub down when one of its loops shows no sign of life this long.
SSE_HUB_STALL_SECONDS = float(env("SSE_HUB_STALL_SECONDS", "30"))
SSE_TICKET_SECONDS = env_int("SSE_TICKET_SECONDS", 60)
EVENT_RETENTION_HOURS = float(env("EVENT_RETENTION_HOURS", "24"))
EVENT_TRIM_INTERVAL_SECONDS = float(env("EVENT_TRIM_INTERVAL_SECONDS", "600"))

# CORS: browsers on these origins may call the API and open streams (none by default).
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_ALLOW_CREDENTIALS = env_bool("CORS_ALLOW_CREDENTIALS")
CORS_ALLOW_HEADERS = (*default_cors_headers, "last-event-id")
CORS_EXPOSE_HEADERS = ["Retry-After"]

# Worker: how often progress is written, and how often a running job checks for cancel.
TASK_PROGRESS_INTERVAL = float(env("TASK_PROGRESS_INTERVAL", "0.25"))
# Least time between two visible updates that only move a running task's progress or ETA (each
# is an event stored and sent to every subscriber); state and stage changes go out at once.
# One a second: twice what 2 s polling sees, a bar that visibly moves, and a compressed stream
# well under 5 KB a minute.
PROGRESS_EVENT_INTERVAL_SECONDS = float(env("PROGRESS_EVENT_INTERVAL_SECONDS", "1.0"))
# Each job runs in a child process bounded in wall time and in memory (address space beyond the
# worker's own); past either it is stopped and the task fails with a readable error.
AUDIO_JOB_TIMEOUT_SECONDS = env_int("AUDIO_JOB_TIMEOUT_SECONDS", 7200)
AUDIO_JOB_MEMORY_MB = env_int("AUDIO_JOB_MEMORY_MB", 4096)

# Recovery: a processing task without a heartbeat for TASK_STALE_SECONDS goes back to pending
# (up to TASK_MAX_ATTEMPTS attempts, then failed); workers sweep every TASK_RECOVERY_SECONDS.
TASK_STALE_SECONDS = float(env("TASK_STALE_SECONDS", "60"))
TASK_MAX_ATTEMPTS = env_int("TASK_MAX_ATTEMPTS", 3)
TASK_RECOVERY_SECONDS = float(env("TASK_RECOVERY_SECONDS", "15"))

# Webhooks: task events POSTed to the users' endpoints by the workers, signed, retried with
# back-off (doubling from the base up to the cap) for WEBHOOK_RETRY_HOURS, then failed.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS")
# Production mode always requires https; WEBHOOK_REQUIRE_HTTPS=1 requires it elsewhere too.
WEBHOOK_REQUIRE_HTTPS = PRODUCTION or env_bool("WEBHOOK_REQUIRE_HTTPS")
WEBHOOK_TIMEOUT_SECONDS = float(env("WEBHOOK_TIMEOUT_SECONDS", "10"))
WEBHOOK_RETRY_HOURS = float(env("WEBHOOK_RETRY_HOURS", "24"))
WEBHOOK_RETRY_BASE_SECONDS = float(env("WEBHOOK_RETRY_BASE_SECONDS", "10"))
WEBHOOK_RETRY_MAX_DELAY_SECONDS = float(env("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "3600"))
WEBHOOK_DISABLE_AFTER_DAYS = float(env("WEBHOOK_DISABLE_AFTER_DAYS", "5"))
WEBHOOK_PROGRESS_INTERVAL_SECONDS = float(env("WEBHOOK_PROGRESS_INTERVAL_SECONDS", "10"))
WEBHOOK_SECRET_GRACE_HOURS = float(env("WEBHOOK_SECRET_GRACE_HOURS", "24"))
WEBHOOK_POLL_SECONDS = float(env("WEBHOOK_POLL_SECONDS", "1"))
WEBHOOK_SEND_THREADS = env_int("WEBHOOK_SEND_THREADS", 8)
WEBHOOK_BATCH_SIZE = env_int("WEBHOOK_BATCH_SIZE", 50)
WEBHOOK_CLAIM_SECONDS = float(env("WEBHOOK_CLAIM_SECONDS", "60"))
WEBHOOK_RESPONSE_MAX_BYTES = env_int("WEBHOOK_RESPONSE_MAX_BYTES", 4096)
WEBHOOK_LINK_BASE_URL = env("WEBHOOK_LINK_BASE_URL")

# Operations: /metrics answers callers with `Authorization: Bearer $METRICS_TOKEN` or from an
# allow-listed address (IPs or CIDR networks; none by default).
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")

if PRODUCTION:
    # Behind a TLS-terminating proxy, set DJANGO_SECURE_PROXY_SSL_HEADER (for example
    # `X-Forwarded-Proto`) so Django knows the request was HTTPS; only do so when the proxy
    # always sets or strips that header.
    proxy_header = env("DJANGO_SECURE_PROXY_SSL_HEADER")
    if proxy_header:
        SECURE_PROXY_SSL_HEADER = ("HTTP_" + proxy_header.upper().replace("-", "_"), "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Health checks and scrapes come over plain HTTP from inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # httpx logs each request at INFO: noise in the output of the client commands (healthcheck, watch_task).
    "loggers": {"django.channels.server": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}
