"""Django settings. Every value comes from an environment variable documented in docs/configuration.md."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from tempfile import mkdtemp

from django.utils.translation import gettext_lazy as _

from console.env import (
    ConfigError,
    database_from_url,
    derived_key,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_optional,
    env_port_range,
    env_str,
    env_syslog_address,
    networks,
)

BASE_DIR = Path(__file__).resolve().parent.parent

CONSOLE_ENV = env_choice("CONSOLE_ENV", "development", ("development", "production", "test"))
PRODUCTION = CONSOLE_ENV == "production"

# Prometheus multi-process mode: every process that serves requests keeps its counters in files here, and
# /metrics merges them. It must be in the environment before prometheus_client is imported, so it is set
# here, at the top of the settings. The serving entry point (deploy/scripts/run-console.sh, the systemd web
# unit) gives it a fresh directory at each start; dead processes' files would otherwise linger.
# A test run counts in a directory of its own: gauges left by an earlier, killed run would be summed in.
_metrics_default = (
    mkdtemp(prefix="console-metrics-") if CONSOLE_ENV == "test" else BASE_DIR / "var" / "run" / "prometheus"
)
APPLIANCE_METRICS_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(_metrics_default))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = APPLIANCE_METRICS_DIR
Path(APPLIANCE_METRICS_DIR).mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("CONSOLE_DEBUG", not PRODUCTION)
# Off unless asked for: a debug page shows settings and code to whoever can reach the console.
DEBUG = env_bool("CONSOLE_DEBUG", False)
_secret = env_optional("CONSOLE_SECRET_KEY")
if PRODUCTION and not _secret:
    raise ConfigError("CONSOLE_SECRET_KEY must be set when CONSOLE_ENV=production")
if PRODUCTION and DEBUG:
    raise ConfigError("CONSOLE_DEBUG must be False when CONSOLE_ENV=production")
SECRET_KEY = _secret or "insecure-development-key-do-not-use-in-production"
# Django's debug pages (tracebacks, settings, the URL list) go to loopback clients only (appliance/core/debug.py).
DEFAULT_EXCEPTION_REPORTER = "appliance.core.debug.LoopbackOnlyExceptionReporter"

# Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR networks), see appliance/core/clientip.py.
APPLIANCE_TRUSTED_PROXIES = env_networks("APPLIANCE_TRUSTED_PROXIES", [])

ALLOWED_HOSTS = env_list("CONSOLE_ALLOWED_HOSTS", ["*"] if not PRODUCTION else [])
CSRF_TRUSTED_ORIGINS = env_list("CONSOLE_CSRF_TRUSTED_ORIGINS", [])

# A stable id for this console installation: every container it starts carries it as a
# label, so two consoles sharing a Docker engine never touch each other's containers.
CONSOLE_ID = env_str("CONSOLE_ID", "appliance")
NODE_NAME = env_str("APPLIANCE_NODE_NAME", socket.gethostname())

# GPUs: a spec such as "8x RTX 4090 24GB" replaces NVML with simulated GPUs (development, CI, demos).
# Checked at start-up by the gpus app (appliance/gpus/apps.py).
APPLIANCE_SIMULATED_GPUS = env_optional("APPLIANCE_SIMULATED_GPUS")
APPLIANCE_INVENTORY_INTERVAL_SECONDS = env_int("APPLIANCE_INVENTORY_INTERVAL_SECONDS", 10, minimum=1)
APPLIANCE_HEARTBEAT_SECONDS = env_int("APPLIANCE_HEARTBEAT_SECONDS", 10, minimum=1)
APPLIANCE_NODE_MISSED_HEARTBEATS = env_int("APPLIANCE_NODE_MISSED_HEARTBEATS", 3, minimum=1)

INSTALLED_APPS = [
    "appliance.core.admin_apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "appliance.core",
    "appliance.accounts",
    "appliance.audit",
    "appliance.gpus",
    "appliance.catalog",
    "appliance.quotas",
    "appliance.gateway",
    "appliance.monitoring",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files before everything else: no session, locale or request id for a stylesheet.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "appliance.monitoring.middleware.MetricsMiddleware",
    "appliance.core.middleware.RequestIdMiddleware",
    "appliance.core.debug.DebugPagesForLoopbackMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "frontend.navigation.navigation",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")
DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}
if PRODUCTION and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    raise ConfigError("DATABASE_URL must point at MySQL/MariaDB when CONSOLE_ENV=production")
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(str(DATABASES["default"]["NAME"])).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The shared queue; a separate name lets parallel test sessions share one Redis without stealing tasks.
CELERY_TASK_DEFAULT_QUEUE = env_str("APPLIANCE_DEFAULT_QUEUE", "default")
# Periodic work that runs once for the whole appliance (per-node work is scheduled by each node's
# worker, see workers/node_agent.py). Other apps add their entries here.
CELERY_BEAT_SCHEDULE = {
    "gpus.reconcile-nodes": {
        "task": "gpus.reconcile_nodes",
        "schedule": float(APPLIANCE_HEARTBEAT_SECONDS),
        "options": {"expires": APPLIANCE_HEARTBEAT_SECONDS},
    },
    "gpus.rollup-metrics": {"task": "gpus.rollup_metrics", "schedule": 60.0, "options": {"expires": 60}},
    "gpus.prune-metrics": {"task": "gpus.prune_metrics", "schedule": 600.0, "options": {"expires": 600}},
}

# Quotas and usage metering (appliance/quotas): limits are enforced in Redis, usage is queued
# there and drained to the database by a Celery beat task.
APPLIANCE_QUOTA_REDIS_URL = env_str("APPLIANCE_QUOTA_REDIS_URL", REDIS_URL)
APPLIANCE_QUOTA_FAIL_OPEN = env_bool("APPLIANCE_QUOTA_FAIL_OPEN", False)
APPLIANCE_QUOTA_REDIS_TIMEOUT_MS = env_int("APPLIANCE_QUOTA_REDIS_TIMEOUT_MS", 500, minimum=10, maximum=60_000)
# The reply (and free-connection) wait of the web processes' event loops, whose reads lag under load.
APPLIANCE_QUOTA_REDIS_LOOP_TIMEOUT_MS = env_int(
    "APPLIANCE_QUOTA_REDIS_LOOP_TIMEOUT_MS", 5000, minimum=10, maximum=60_000
)
APPLIANCE_QUOTA_RESERVATION_TTL_SECONDS = env_int(
    "APPLIANCE_QUOTA_RESERVATION_TTL_SECONDS", 900, minimum=1, maximum=24 * 3600
)
APPLIANCE_USAGE_DRAIN_BATCH_SIZE = env_int("APPLIANCE_USAGE_DRAIN_BATCH_SIZE", 500, minimum=1, maximum=10_000)
APPLIANCE_USAGE_DRAIN_INTERVAL_SECONDS = env_int("APPLIANCE_USAGE_DRAIN_INTERVAL_SECONDS", 2, minimum=1)

CELERY_BEAT_SCHEDULE["usage.drain"] = {
    "task": "usage.drain",
    "schedule": float(APPLIANCE_USAGE_DRAIN_INTERVAL_SECONDS),
    # A drain that waited longer than a few intervals is superseded by the next one.
    "options": {"expires": APPLIANCE_USAGE_DRAIN_INTERVAL_SECONDS * 5},
}

# OpenAI-compatible gateway (appliance/gateway), mounted at /v1/.
APPLIANCE_GATEWAY_CONNECT_TIMEOUT_SECONDS = env_float("APPLIANCE_GATEWAY_CONNECT_TIMEOUT_SECONDS", 3.0)
APPLIANCE_GATEWAY_READ_TIMEOUT_SECONDS = env_float("APPLIANCE_GATEWAY_READ_TIMEOUT_SECONDS", 600.0)
APPLIANCE_GATEWAY_MAX_CONNECTIONS = env_int("APPLIANCE_GATEWAY_MAX_CONNECTIONS", 1000, minimum=1)
APPLIANCE_GATEWAY_CACHE_SECONDS = env_float("APPLIANCE_GATEWAY_CACHE_SECONDS", 5.0)
APPLIANCE_GATEWAY_DEFAULT_MAX_TOKENS = env_int("APPLIANCE_GATEWAY_DEFAULT_MAX_TOKENS", 1024, minimum=1)
# Prompt tokens reserved for a chat template not measured on its engine yet (see engines/prompt.py).
APPLIANCE_TEMPLATE_TOKENS = env_int("APPLIANCE_TEMPLATE_TOKENS", 64, minimum=0)
APPLIANCE_MESSAGE_TOKENS = env_int("APPLIANCE_MESSAGE_TOKENS", 16, minimum=0)
APPLIANCE_GATEWAY_MAX_BODY_BYTES = env_int("APPLIANCE_GATEWAY_MAX_BODY_BYTES", 20 * 1024 * 1024, minimum=1024)
# /v1/ straight from the ASGI server to the gateway's views, past Django's middleware (appliance/gateway/asgi.py).
APPLIANCE_GATEWAY_FAST_PATH = env_bool("APPLIANCE_GATEWAY_FAST_PATH", True)

# No channel layer: the chat's events go straight to the sockets of the process that generates them, and
# through Redis pub/sub to the others' (appliance/chat/fanout.py; channels_redis dropped messages, issue 11).
CHANNEL_LAYERS: dict[str, dict[str, object]] = {}

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if CONSOLE_ENV == "test":
    # Hashing is deliberately slow; tests create many users and don't test the hasher.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_FAILURE_LIMIT = env_int("CONSOLE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("CONSOLE_LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60, minimum=1)
# Past the limit, an (account, address) pair or an address waits this long, doubled per further failure, up to the max.
LOGIN_DELAY_SECONDS = env_int("CONSOLE_LOGIN_DELAY_SECONDS", 30, minimum=1)
LOGIN_MAX_DELAY_SECONDS = env_int("CONSOLE_LOGIN_MAX_DELAY_SECONDS", 15 * 60, minimum=1)
# The Django admin (/django-admin/): off unless asked for; when on, it signs in through the console's
# login (throttled, audited) and admits platform admins only.
DJANGO_ADMIN_ENABLED = env_bool("CONSOLE_DJANGO_ADMIN", False)
API_KEY_LAST_USED_RESOLUTION_SECONDS = 60

# Content-Security-Policy on every page (django-csp; docs/security.md). Scripts, style sheets, fonts
# and images come from the console itself: an answer that slipped a tag past the chat's sanitiser
# still could not run a script, load a tracking image or post a form elsewhere. Style *attributes*
# stay allowed: KaTeX sizes its glyphs with them, and CSS cannot fetch anything img-src refuses.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],  # 'self' covers the chat's WebSocket on the same host (CSP level 3)
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}
SESSION_COOKIE_SECURE = env_bool("CONSOLE_SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("CONSOLE_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# frontend/static is found as the frontend app's static folder (AppDirectoriesFinder).
# `manage.py serve` collects here (hashed names, gzip and brotli copies); WhiteNoise serves it (docs/serving.md).
STATIC_ROOT = Path(env_str("CONSOLE_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "appliance.core.staticfiles.StaticStorage"},
}

# --- Serving (manage.py serve: granian, see docs/serving.md and docs/adr/0002-asgi-server.md) -----------
CONSOLE_HOST = env_str("CONSOLE_HOST", "127.0.0.1")
CONSOLE_PORT = env_int("CONSOLE_PORT", 8000, minimum=1, maximum=65535)
CONSOLE_WORKERS = env_int("CONSOLE_WORKERS", len(os.sched_getaffinity(0)), minimum=1, maximum=256)
# Connections one worker serves at once, held chat sockets included (granian's "backpressure"; its default,
# backlog / workers, stopped a two-worker console at 512 sockets each). Past it, new ones wait in the backlog.
CONSOLE_WORKER_CONNECTIONS = env_int("CONSOLE_WORKER_CONNECTIONS", 4096, minimum=16, maximum=65536)
CONSOLE_BACKLOG = env_int("CONSOLE_BACKLOG", 2048, minimum=16, maximum=65536)
# Threads per worker for the database work of chat sockets and answers, each keeping its connection
# (appliance/core/dbthreads.py).
CONSOLE_DB_THREADS = env_int("CONSOLE_DB_THREADS", 8, minimum=1, maximum=64)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "appliance.accounts.authentication.BearerKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "appliance.core.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "appliance.core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "appliance.core.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# /api/schema/ and /api/docs/ need a login (session or API key) unless opened here.
API_DOCS_PUBLIC = env_bool("CONSOLE_API_DOCS_PUBLIC", False)
SPECTACULAR_SETTINGS = {
    "SERVE_PERMISSIONS": ["appliance.core.api.docs.ApiDocsPermission"],
    "TITLE": "Appliance console API",
    "DESCRIPTION": "Control plane of the all-in-one LLM appliance.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from the sidecar package through the static files: the appliance is offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "appliance.core.context.RequestIdLogFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env_str("CONSOLE_LOG_LEVEL", "INFO")},
}

# --- Audit log signing (appliance/audit/anchor.py) ---------------------------------------------
# Kept outside the database on purpose: a rewrite of the chain in the database alone then fails verification.
APPLIANCE_AUDIT_KEY = env_optional("APPLIANCE_AUDIT_KEY") or derived_key(SECRET_KEY, "appliance.audit.signing-key")
if PRODUCTION and len(APPLIANCE_AUDIT_KEY) < 32:
    raise ConfigError("APPLIANCE_AUDIT_KEY must be at least 32 characters")
# Former keys, still accepted for records (and anchors) they signed: see docs/security.md, "Rotating the audit key".
APPLIANCE_AUDIT_RETIRED_KEYS = env_list("APPLIANCE_AUDIT_RETIRED_KEYS", [])
APPLIANCE_AUDIT_ANCHOR_FILE = env_str("APPLIANCE_AUDIT_ANCHOR_FILE", "")
APPLIANCE_AUDIT_ANCHOR_SECONDS = env_int("APPLIANCE_AUDIT_ANCHOR_SECONDS", 300, minimum=10)
# Also send the anchor lines to a syslog daemon (a socket path or host:port over UDP), off the console's hosts ideally.
APPLIANCE_AUDIT_SYSLOG = env_syslog_address("APPLIANCE_AUDIT_SYSLOG")
if APPLIANCE_AUDIT_SYSLOG is not None:
    LOGGING["handlers"]["audit_syslog"] = {  # type: ignore[index]
        "class": "logging.handlers.SysLogHandler",
        "address": APPLIANCE_AUDIT_SYSLOG,
        "formatter": "syslog",
    }
    LOGGING["formatters"]["syslog"] = {"format": "appliance-console: %(message)s"}  # type: ignore[index]
    LOGGING["loggers"] = {"appliance.audit.anchor": {"handlers": ["console", "audit_syslog"], "propagate": False}}
CELERY_BEAT_SCHEDULE["audit.export-anchor"] = {
    "task": "audit.export_anchor",
    "schedule": float(APPLIANCE_AUDIT_ANCHOR_SECONDS),
    "options": {"expires": APPLIANCE_AUDIT_ANCHOR_SECONDS},
}

# --- Deployments (engines in Docker containers) -------------------------------------------------
APPLIANCE_NODE_ADDRESS = env_str("APPLIANCE_NODE_ADDRESS", "127.0.0.1")
APPLIANCE_ENGINE_BIND_ADDRESS = env_str("APPLIANCE_ENGINE_BIND_ADDRESS", "127.0.0.1")
APPLIANCE_PORT_RANGE = env_port_range("APPLIANCE_PORT_RANGE", (20000, 20999))
APPLIANCE_PLACEMENT = env_choice("APPLIANCE_PLACEMENT", "spread", ("spread", "binpack"))
# Each engine's image, when set; empty: the image its specs were checked against (appliance/engines).
APPLIANCE_ENGINE_IMAGES = {
    "vllm": env_str("APPLIANCE_IMAGE_VLLM", ""),
    "ollama": env_str("APPLIANCE_IMAGE_OLLAMA", ""),
    "llamacpp": env_str("APPLIANCE_IMAGE_LLAMACPP", ""),
}
APPLIANCE_MODELS_DIR = env_str("APPLIANCE_MODELS_DIR", "")
APPLIANCE_DOCKER_TIMEOUT_SECONDS = env_int("APPLIANCE_DOCKER_TIMEOUT_SECONDS", 60, minimum=1)
APPLIANCE_HEALTH_PROBE_TIMEOUT_SECONDS = env_float("APPLIANCE_HEALTH_PROBE_TIMEOUT_SECONDS", 3.0)
APPLIANCE_HEALTH_TIMEOUT_SECONDS = env_int("APPLIANCE_HEALTH_TIMEOUT_SECONDS", 1800, minimum=5)
APPLIANCE_STOP_GRACE_SECONDS = env_int("APPLIANCE_STOP_GRACE_SECONDS", 10, minimum=0)
APPLIANCE_RECONCILE_SECONDS = env_int("APPLIANCE_RECONCILE_SECONDS", 15, minimum=1)
APPLIANCE_LAUNCH_GRACE_SECONDS = env_int("APPLIANCE_LAUNCH_GRACE_SECONDS", 120, minimum=1)
APPLIANCE_MAX_RESTARTS = env_int("APPLIANCE_MAX_RESTARTS", 3, minimum=0)
# Threads of a CPU-only llama.cpp/Ollama engine; 0 = half the node's CPUs.
APPLIANCE_ENGINE_CPU_THREADS = env_int("APPLIANCE_ENGINE_CPU_THREADS", 0, minimum=0)
# Secret from which each deployment's engine key is derived (appliance/deployments/engine_keys.py);
# empty: derived from CONSOLE_SECRET_KEY. Changing it changes every engine key: restart deployments.
APPLIANCE_ENGINE_KEY_SECRET = env_str("APPLIANCE_ENGINE_KEY_SECRET", "")
# Engine containers a department's subtree may run when its quota sets no max_containers; 0: no limit.
APPLIANCE_DEFAULT_MAX_CONTAINERS = env_int("APPLIANCE_DEFAULT_MAX_CONTAINERS", 16, minimum=0)
# Fault injection for the worker-death tests only, e.g. "after_create:30"; empty in production.
APPLIANCE_FAULT_SLEEP = env_str("APPLIANCE_FAULT_SLEEP", "")
INSTALLED_APPS.append("appliance.deployments")
INSTALLED_APPS.append("appliance.images")
CELERY_BEAT_SCHEDULE["deployments.reconcile-all"] = {
    "task": "deployments.reconcile_all",
    "schedule": float(APPLIANCE_RECONCILE_SECONDS),
    "options": {"expires": APPLIANCE_RECONCILE_SECONDS},
}
# On-demand deployments: how long a request for one that is not running waits while it starts before
# the gateway answers 503 with Retry-After (the chat waits as long, showing the time), and how often
# the idle check runs.
APPLIANCE_ON_DEMAND_WAIT_SECONDS = env_int("APPLIANCE_ON_DEMAND_WAIT_SECONDS", 120, minimum=0, maximum=3600)
APPLIANCE_ON_DEMAND_RETRY_AFTER_SECONDS = env_int("APPLIANCE_ON_DEMAND_RETRY_AFTER_SECONDS", 10, minimum=1)
APPLIANCE_IDLE_CHECK_SECONDS = env_int("APPLIANCE_IDLE_CHECK_SECONDS", 30, minimum=1)
CELERY_BEAT_SCHEDULE["deployments.stop-idle"] = {
    "task": "deployments.stop_idle",
    "schedule": float(APPLIANCE_IDLE_CHECK_SECONDS),
    "options": {"expires": APPLIANCE_IDLE_CHECK_SECONDS},
}
APPLIANCE_LOGS_WAIT_SECONDS = env_int("APPLIANCE_LOGS_WAIT_SECONDS", 5, minimum=1)
# Image imports (`docker load` of `docker save` tarballs on a node). The web process stores uploads here and
# each node's worker reads from here: on a multi-node appliance it is shared storage mounted at this path on
# the web host and on every node.
APPLIANCE_IMAGE_IMPORT_DIR = env_str("APPLIANCE_IMAGE_IMPORT_DIR", "/var/lib/appliance/images")
APPLIANCE_IMAGE_UPLOAD_MAX_BYTES = env_int("APPLIANCE_IMAGE_UPLOAD_MAX_BYTES", 64 * 1024**3, minimum=1)
# A running import whose worker wrote no progress for this long is failed by the reaper (its worker died).
APPLIANCE_IMAGE_IMPORT_STALE_SECONDS = env_int("APPLIANCE_IMAGE_IMPORT_STALE_SECONDS", 1800, minimum=60)
CELERY_BEAT_SCHEDULE["images.reap-imports"] = {
    "task": "images.reap_imports",
    "schedule": 60.0,
    "options": {"expires": 60},
}

# --- Chat portal (appliance/chat) ---------------------------------------------------------------
INSTALLED_APPS.append("appliance.chat")

# --- Content safety (appliance/safety) ----------------------------------------------------------
INSTALLED_APPS.append("appliance.safety")
# Keep the text around each match with the hit (20 characters either side); off: who, which rule, what it did.
APPLIANCE_SAFETY_RECORD_TEXT = env_bool("APPLIANCE_SAFETY_RECORD_TEXT", False)
# Answers in progress are kept here (Channels' Redis unless set).
CHAT_REDIS_URL = env_str("CHAT_REDIS_URL", env_str("CHANNELS_REDIS_URL", REDIS_URL))
CHAT_UPSTREAM_CONNECT_TIMEOUT_SECONDS = env_float("CHAT_UPSTREAM_CONNECT_TIMEOUT_SECONDS", 3.0)
# The longest silence of an engine (before its first token included) before the answer fails.
CHAT_UPSTREAM_READ_TIMEOUT_SECONDS = env_float("CHAT_UPSTREAM_READ_TIMEOUT_SECONDS", 300.0)
CELERY_BEAT_SCHEDULE["chat.recover-orphans"] = {
    "task": "chat.recover_orphans",
    "schedule": 60.0,
    "options": {"expires": 60},
}

# --- Monitoring (appliance/monitoring, docs/operations.md) ---------------------------------------
# /metrics answers a client whose address is in the allow-list, or one that presents the bearer token.
APPLIANCE_METRICS_TOKEN = env_optional("APPLIANCE_METRICS_TOKEN")
APPLIANCE_METRICS_ALLOW = env_networks("APPLIANCE_METRICS_ALLOW", ["127.0.0.1/32", "::1/128"])
APPLIANCE_METRICS_NETWORKS = networks(APPLIANCE_METRICS_ALLOW)
# Directories whose free space /metrics reports (console_disk_free_bytes), for the disk alert.
APPLIANCE_METRICS_DISK_PATHS = env_list("APPLIANCE_METRICS_DISK_PATHS", [str(BASE_DIR / "var")])

# --- Backups and retention (appliance/operations, docs/operations.md) ---------------------------
INSTALLED_APPS.append("appliance.operations")
APPLIANCE_BACKUP_DIR = env_str("APPLIANCE_BACKUP_DIR", str(BASE_DIR / "var" / "backups"))
APPLIANCE_BACKUP_KEEP = env_int("APPLIANCE_BACKUP_KEEP", 14, minimum=1)
# Local hour (CONSOLE_TIME_ZONE) of the daily backup; -1 turns scheduled backups off.
APPLIANCE_BACKUP_HOUR = env_int("APPLIANCE_BACKUP_HOUR", 3, minimum=-1, maximum=23)
CELERY_TIMEZONE = TIME_ZONE
if APPLIANCE_BACKUP_HOUR >= 0:
    from celery.schedules import crontab

    CELERY_BEAT_SCHEDULE["operations.backup"] = {
        "task": "operations.backup",
        "schedule": crontab(hour=APPLIANCE_BACKUP_HOUR, minute=0),
        # On the beat host's own queue: the archive is written where APPLIANCE_BACKUP_DIR is mounted.
        "options": {"queue": f"node.{NODE_NAME}", "expires": 3600},
    }
# Audit records stay in the database this many days (China's Cybersecurity Law asks for six months of
# network logs); older ones move to signed segment files here, which verify_audit_chain reads too.
APPLIANCE_AUDIT_RETENTION_DAYS = env_int("APPLIANCE_AUDIT_RETENTION_DAYS", 180, minimum=1)
APPLIANCE_AUDIT_ARCHIVE_DIR = env_str(
    "APPLIANCE_AUDIT_ARCHIVE_DIR",
    mkdtemp(prefix="console-audit-archive-") if CONSOLE_ENV == "test" else str(BASE_DIR / "var" / "audit-archive"),
)
CELERY_BEAT_SCHEDULE["audit.archive-old"] = {
    "task": "audit.archive_old",
    "schedule": crontab(hour=4, minute=30),
    # Where the archive directory is: the beat host's own queue, as for backups.
    "options": {"queue": f"node.{NODE_NAME}", "expires": 3600},
}
# Usage rows: single requests are rolled up into hourly rows after this many days, hourly rows into
# daily rows after the second number; reports give the same totals either way (appliance/quotas/retention.py).
APPLIANCE_USAGE_RAW_DAYS = env_int("APPLIANCE_USAGE_RAW_DAYS", 90, minimum=1)
APPLIANCE_USAGE_HOURLY_DAYS = env_int("APPLIANCE_USAGE_HOURLY_DAYS", 400, minimum=1)
CELERY_BEAT_SCHEDULE["usage.retention"] = {
    "task": "usage.retention",
    "schedule": crontab(hour=4, minute=0),
    "options": {"expires": 3600},
}

# --- Directory sign-in: LDAP / Active Directory and OIDC (appliance/sso, docs/sign-in.md) ----------------
# Off unless configured; a partial configuration stops the console at start, naming the variable.
from console.sso_settings import authentication_backends, ldap_settings, oidc_settings  # noqa: E402

INSTALLED_APPS.append("appliance.sso")
_LDAP_SETTINGS = ldap_settings()
_OIDC_SETTINGS = oidc_settings(PRODUCTION)
APPLIANCE_LDAP_ENABLED: bool = _LDAP_SETTINGS["APPLIANCE_LDAP_ENABLED"]
APPLIANCE_OIDC_ENABLED: bool = _OIDC_SETTINGS["APPLIANCE_OIDC_ENABLED"]
globals().update(_LDAP_SETTINGS)
globals().update(_OIDC_SETTINGS)
AUTHENTICATION_BACKENDS = authentication_backends(APPLIANCE_LDAP_ENABLED, APPLIANCE_OIDC_ENABLED)
if APPLIANCE_LDAP_ENABLED:
    CELERY_BEAT_SCHEDULE["sso.sync-directory"] = {
        "task": "sso.sync_directory",
        "schedule": float(_LDAP_SETTINGS["APPLIANCE_LDAP_SYNC_SECONDS"]),
        "options": {"expires": _LDAP_SETTINGS["APPLIANCE_LDAP_SYNC_SECONDS"]},
    }
