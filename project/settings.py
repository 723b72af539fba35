"""Settings for the governed plugin execution project.

Everything that differs between a laptop and a deployment comes from the
environment: DEBUG, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, and the rest listed in
docs/configuration.md (deploy/governed.env.example has the production set).
"""

import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_rate(name: str, default: str) -> str | None:
    """A throttle rate "N/s|min|hour|day" from the environment; None when empty or "off"."""
    value = os.environ.get(name, default).strip()
    if value.lower() in {"", "off"}:
        return None
    count, _, period = value.partition("/")
    periods = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}
    if not count.strip().isdigit() or int(count) < 1 or period.strip().lower() not in periods:
        raise ImproperlyConfigured(f"{name}={value!r}: expected N/s, N/min, N/hour, N/day or off.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=False)

# Empty when DEBUG is off and the environment has none: gunicorn and the workers then
# stop with one line (project/secret_key.py); commands that sign nothing still run.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "insecure-local-development-key-never-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
    "django_tasks",
    # Before django_tasks_db: its db_worker command is this app's, which never orphans a job.
    "execution",
    "django_tasks_db",
    "plugins",
    "governance_scanner",
    "axes",  # admin login lockout, below
]

MIDDLEWARE = [
    "api.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, Swagger UI's) from gunicorn itself, hashed names.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
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

# SQLite is the embedded default. WAL lets readers run beside the writer,
# synchronous=NORMAL is durable across application crashes in WAL mode, and
# IMMEDIATE transactions take the write lock up front so concurrent writers
# wait (busy timeout) instead of failing with "database is locked".
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": float(os.environ.get("SQLITE_BUSY_TIMEOUT_S", "20")),
}
# How often a thread of each process checkpoints SQLite's log (0: commits do, SQLite's way).
SQLITE_CHECKPOINT_INTERVAL_S = float(os.environ.get("SQLITE_CHECKPOINT_INTERVAL_S", "1"))

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0 if DEBUG else DATABASES["default"]["CONN_MAX_AGE"]
    # Django's backend, waiting for the write lock in finer steps (see its docstring).
    DATABASES["default"]["ENGINE"] = "execution.backends.sqlite3"
    DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# Artifacts: files plugins return with their results (docs/configuration.md, "Artifacts").
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
ARTIFACT_STORAGE_BACKEND = os.environ.get(
    "ARTIFACT_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"
)
try:
    ARTIFACT_STORAGE_OPTIONS = json.loads(os.environ.get("ARTIFACT_STORAGE_OPTIONS") or "{}")
except ValueError:
    ARTIFACT_STORAGE_OPTIONS = None
if not isinstance(ARTIFACT_STORAGE_OPTIONS, dict):
    raise ImproperlyConfigured("ARTIFACT_STORAGE_OPTIONS must be a JSON object")
# The operator's ceilings: one artifact (caps every plugin's max_artifact_bytes), and
# one execution's artifacts together.
ARTIFACT_MAX_BYTES = int(os.environ.get("ARTIFACT_MAX_BYTES", str(50 * 1024 * 1024)))
ARTIFACT_MAX_TOTAL_BYTES = int(os.environ.get("ARTIFACT_MAX_TOTAL_BYTES", str(200 * 1024 * 1024)))
if ARTIFACT_MAX_BYTES < 1 or ARTIFACT_MAX_TOTAL_BYTES < 1:
    raise ImproperlyConfigured("ARTIFACT_MAX_BYTES and ARTIFACT_MAX_TOTAL_BYTES must be positive")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "artifacts": {"BACKEND": ARTIFACT_STORAGE_BACKEND, "OPTIONS": ARTIFACT_STORAGE_OPTIONS},
    # collectstatic writes hashed, compressed copies; WhiteNoise serves them with
    # far-future caching. Under DEBUG the finders serve the sources instead.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# HTTPS behind a proxy (docs/deployment.md). The proxy terminates TLS and says so in
# X-Forwarded-Proto; Django trusts that header only when told to.
if env_bool("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's, with failed attempts throttled per client address (API rate limits, below).
        "execution.policy.authentication.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "api.negotiation.ContentNegotiation",
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "api.schema.GovernedAutoSchema",
    "UNAUTHENTICATED_USER": None,
    # API rate limits (docs/configuration.md, "Rate limits"): DRF throttles whose state is
    # in the database, so every web process shares it. Each user's execution requests (POST
    # /v1/analyze-execution and /v1/jobs together; cancels apart, at the same rates) count
    # against a burst and a sustained rate; failed authentications against the client's
    # address. A rate is "N/s", "N/min", "N/hour" or "N/day"; empty or "off" disables it.
    "DEFAULT_THROTTLE_RATES": {
        "burst": env_rate("API_THROTTLE_BURST", "60/min"),
        "sustained": env_rate("API_THROTTLE_SUSTAINED", "2000/day"),
        "failed_authentication": env_rate("API_THROTTLE_AUTH_FAILURES", "30/min"),
    },
    # The client's address is the connection's peer; behind N proxies that each append it
    # to X-Forwarded-For, set API_NUM_PROXIES=N (never trust the header with no proxy: a
    # client could name any address).
    "NUM_PROXIES": int(os.environ.get("API_NUM_PROXIES", "0")),
}

# Of a client's refusals, the first in each this many seconds goes on the audit trail
# (every one is counted in Prometheus).
API_THROTTLE_AUDIT_INTERVAL_S = float(os.environ.get("API_THROTTLE_AUDIT_INTERVAL_S", "60"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Governed plugin execution API",
    "DESCRIPTION": "Every plugin run goes through one audited path and is recorded as a Job.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["api.schema.document_paths_without_trailing_slash"],
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1 is JSON Schema itself: the plugins' pydantic schemas go in unchanged.
    "OAS_VERSION": "3.1.0",
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "execution.models.JobStatus",
        # the one status of a synchronous result, named as it was before results were typed
        "ExecutionResultStatusEnum": ["SUCCESS"],
    },
}

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}
# The adapter through which jobs' tasks are queued and lost ones found (execution/task_engine/);
# it must be the one for TASKS' backend.
TASK_ENGINE = "execution.task_engine.django_tasks_db.engine.DjangoTasksDbEngine"
# Waking idle db_workers (execution/task_engine/django_tasks_db/wakeup.py): on PostgreSQL
# a queued task NOTIFYs them; off (and always on SQLite) they find it at their next poll.
JOB_NOTIFY_WORKERS = env_bool("JOB_NOTIFY_WORKERS", default=True)

# --- Celery engine (issue 19: docs/celery.md, docs/configuration.md "Celery engine") ---
# TASKS_BACKEND picks the engine: "database" (django-tasks-db and `manage.py db_worker`,
# the default) or "celery" (a broker, `celery -A project worker`; pip install -e '.[celery]').
TASKS_BACKEND = os.environ.get("TASKS_BACKEND", "").strip().lower() or "database"
if TASKS_BACKEND not in {"database", "celery"}:
    raise ImproperlyConfigured(
        f"TASKS_BACKEND must be 'database' or 'celery', not {TASKS_BACKEND!r}"
    )
if TASKS_BACKEND == "celery":
    from execution.task_engine.celery_tasks.broker import broker_url_from_env

    TASKS = {
        "default": {
            "BACKEND": "execution.task_engine.celery_tasks.backend.CeleryBackend",
            "QUEUES": ["default"],
        }
    }
    TASK_ENGINE = "execution.task_engine.celery_tasks.engine.CeleryEngine"
    CELERY_BROKER_URL = broker_url_from_env("CELERY_BROKER_URL")
# At-least-once delivery: a message is acknowledged when its task ends, and one whose
# worker process died goes back to the queue; each worker process takes one message
# at a time. Redis hands an unacknowledged message to another worker after the
# visibility timeout: longer than any lease and retry backoff (a worker checks at start).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Every CELERY_RESTORE_INTERVAL_S a worker puts such messages back (kombu: every 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": float(os.environ.get("CELERY_VISIBILITY_TIMEOUT_S", "3600")),
    "unacked_restore_interval": float(os.environ.get("CELERY_RESTORE_INTERVAL_S", "10")),
    "unacked_restore_throttle": 1,
}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_IGNORE_RESULT = True  # outcomes are on the jobs; no result backend
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web process whose broker is down gives up publishing after about a second; the
# job's task is then UNSENT and lease recovery queues it again.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = float(os.environ.get("CELERY_BROKER_CONNECTION_TIMEOUT_S", "2"))
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # the project's LOGGING formats every line
# --- end of Celery engine ---

# Plugins: entry points in the "governed_plugins" group are always discovered;
# PLUGINS adds dotted paths ("package.module.PluginClass") on top of them.
PLUGINS = env_list("PLUGINS", [])
PLUGIN_METRICS_ENABLED = env_bool("PLUGIN_METRICS_ENABLED", default=True)

# Containment. Each is the default of the plugin attribute of the same meaning.
# "process": a pooled child process that is killed past its limits; "thread": trusted plugins.
PLUGIN_ISOLATION = os.environ.get("PLUGIN_ISOLATION", "process")
PLUGIN_DEFAULT_TIMEOUT_S = float(os.environ.get("PLUGIN_DEFAULT_TIMEOUT_S", "30"))
PLUGIN_DEFAULT_MAX_MEMORY_MB = int(os.environ.get("PLUGIN_DEFAULT_MAX_MEMORY_MB", "1024"))
PLUGIN_MAX_RESULT_BYTES = int(os.environ.get("PLUGIN_MAX_RESULT_BYTES", str(1024 * 1024)))
# Process isolation runs each plugin in sandboxed host processes of its own: this many
# are kept ready per plugin in each web process and worker, each serves this many
# executions at most, and they are started when a process starts (PLUGIN_WARM_HOSTS).
PLUGIN_HOSTS_PER_PLUGIN = int(os.environ.get("PLUGIN_HOSTS_PER_PLUGIN", "1"))
PLUGIN_MAX_EXECUTIONS_PER_HOST = int(os.environ.get("PLUGIN_MAX_EXECUTIONS_PER_HOST", "10000"))
PLUGIN_WARM_HOSTS = env_bool("PLUGIN_WARM_HOSTS", default=True)
# The kernel confines every host (Landlock, seccomp, no privileges; docs/sandbox.md).
# "off" runs them unconfined: only for a kernel without Landlock, knowingly. A server
# running as root starts hosts as PLUGIN_SANDBOX_USER. What a plugin asks for beyond
# its sandbox it gets only if it is named in the matching setting: the network
# (network = True), paths to read (read_paths), a thread of the server (isolation =
# "thread"; PLUGIN_ISOLATION=thread puts every plugin there).
PLUGIN_SANDBOX = os.environ.get("PLUGIN_SANDBOX", "on")
PLUGIN_SANDBOX_USER = os.environ.get("PLUGIN_SANDBOX_USER", "nobody")
PLUGIN_NETWORK_ALLOWED = env_list("PLUGIN_NETWORK_ALLOWED", [])
PLUGIN_READ_PATHS_ALLOWED = env_list("PLUGIN_READ_PATHS_ALLOWED", [])
PLUGIN_THREAD_ALLOWED = env_list("PLUGIN_THREAD_ALLOWED", [])

# Jobs. A RUNNING job's lease ends at its start + its plugin's time limit + this grace;
# every web process and worker recovers expired leases every JOB_RECOVERY_INTERVAL_S
# (0: never). A retried job waits JOB_RETRY_BACKOFF_S, doubled at each attempt.
JOB_LEASE_GRACE_S = float(os.environ.get("JOB_LEASE_GRACE_S", "10"))
JOB_RECOVERY_INTERVAL_S = float(os.environ.get("JOB_RECOVERY_INTERVAL_S", "5"))
JOB_RETRY_BACKOFF_S = float(os.environ.get("JOB_RETRY_BACKOFF_S", "2"))
JOB_CANCEL_POLL_S = float(os.environ.get("JOB_CANCEL_POLL_S", "0.5"))
# A synchronous request whose outcome the database does not take (a full disk, a
# failover) waits this long, then answers 503 while the process keeps trying until
# the job's lease ends.
JOB_OUTCOME_SYNC_WAIT_S = float(os.environ.get("JOB_OUTCOME_SYNC_WAIT_S", "5"))
# Lease times are the database's clock; a process whose own clock is further off
# than this logs a WARNING (measured every JOB_CLOCK_CHECK_INTERVAL_S).
JOB_CLOCK_SKEW_WARN_S = float(os.environ.get("JOB_CLOCK_SKEW_WARN_S", "2"))
JOB_CLOCK_CHECK_INTERVAL_S = float(os.environ.get("JOB_CLOCK_CHECK_INTERVAL_S", "60"))
# Busy workers start queued jobs in turns among requesters (execution/policy/
# scheduling.py); off: first come, first served.
JOB_FAIR_SCHEDULING = env_bool("JOB_FAIR_SCHEDULING", default=True)
# /v1/health answers 503 when the file system of a SQLite database has less free space.
HEALTH_MIN_FREE_DISK_MB = float(os.environ.get("HEALTH_MIN_FREE_DISK_MB", "16"))
# The audit trail. AUDIT_ENABLED off records nothing (for benchmarks: a database run
# without it cannot be verified). Workers seal waiting entries every
# AUDIT_SEAL_INTERVAL_S, web processes as their backstop (0: never; `manage.py
# seal_audit` seals on demand). The
# optional AUDIT_SIGNING_KEY is read from the environment by execution/audit/signing.py,
# never a setting: plugin processes load these settings.
AUDIT_ENABLED = env_bool("AUDIT_ENABLED", default=True)
AUDIT_SEAL_INTERVAL_S = float(os.environ.get("AUDIT_SEAL_INTERVAL_S", "2"))
# What POST /v1/jobs suggests in Retry-After: seconds before the first read of the job.
JOB_POLL_AFTER_S = int(os.environ.get("JOB_POLL_AFTER_S", "1"))

# Policy: who may run which plugin, and how much (docs/policy.md). "restricted": a
# user runs a plugin only through a grant (admin, or `manage.py grant_plugin`);
# "open": every authenticated user may run every plugin. Superusers run everything.
PLUGIN_ACCESS = os.environ.get("PLUGIN_ACCESS", "restricted").strip().lower()
if PLUGIN_ACCESS not in {"restricted", "open"}:
    raise ImproperlyConfigured(
        f"PLUGIN_ACCESS must be 'restricted' or 'open', not {PLUGIN_ACCESS!r}"
    )
# What /v1/plugins asks for the plugins a user may run (the plugins app sits below the
# policy, so a setting names it).
PLUGIN_RUNNABLE = "execution.policy.selectors.runnable_plugins"
# Each user's quotas, unless a grant of the plugin says otherwise; 0 is no limit. Jobs
# PENDING or RUNNING at once; synchronous runs in flight at once; bytes of inputs and
# results stored per day (UTC); seconds of execution (elapsed_ms) per day.
POLICY_MAX_ACTIVE_JOBS = int(os.environ.get("POLICY_MAX_ACTIVE_JOBS", "1000"))
POLICY_MAX_SYNC_RUNS = int(os.environ.get("POLICY_MAX_SYNC_RUNS", "4"))
POLICY_DAILY_STORED_BYTES = int(os.environ.get("POLICY_DAILY_STORED_BYTES", str(1024**3)))
POLICY_DAILY_EXECUTION_S = int(os.environ.get("POLICY_DAILY_EXECUTION_S", "86400"))

# --- Workers and metrics (issue 18: docs/operations.md, docs/configuration.md) ---
# A db_worker beats every WORKER_HEARTBEAT_S; one silent for WORKER_STALE_S counts as gone
# (/v1/health answers 503 while jobs wait and no worker is alive).
WORKER_HEARTBEAT_S = float(os.environ.get("WORKER_HEARTBEAT_S", "5"))
WORKER_STALE_S = float(os.environ.get("WORKER_STALE_S", "30"))
# /metrics: a bearer token it requires, and/or the client networks it answers (comma
# separated CIDRs, matched against REMOTE_ADDR); empty: anyone.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = [
    network.strip()
    for network in os.environ.get("METRICS_ALLOWED_NETWORKS", "").split(",")
    if network.strip()
]
# --- end of workers and metrics ---

# --- Worker concurrency (issue 19: docs/operations.md) ---
# How many jobs one worker process runs at once, each under its own lease; default: the
# plugin pool's size (PLUGIN_HOSTS_PER_PLUGIN). A db_worker keeps at least this many
# hosts ready per plugin; `db_worker --concurrency N` overrides it for one worker.
_worker_concurrency = os.environ.get("WORKER_CONCURRENCY", "").strip()
if _worker_concurrency and not (_worker_concurrency.isdigit() and int(_worker_concurrency) >= 1):
    raise ImproperlyConfigured(
        f"WORKER_CONCURRENCY={_worker_concurrency!r}: expected a whole number of at least 1."
    )
WORKER_CONCURRENCY = int(_worker_concurrency) if _worker_concurrency else PLUGIN_HOSTS_PER_PLUGIN
CELERY_WORKER_CONCURRENCY = WORKER_CONCURRENCY  # a Celery worker's pool processes
# --- end of worker concurrency ---

# Largest request body the API accepts; bigger ones get 413 PayloadTooLarge. Django
# checks it before anything reads the body (the admin's forms get the same limit).
API_MAX_REQUEST_BYTES = int(os.environ.get("API_MAX_REQUEST_BYTES", str(8 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_REQUEST_BYTES

# How long an Idempotency-Key names its first request's job (then it may name a new one).
IDEMPOTENCY_TTL_S = float(os.environ.get("IDEMPOTENCY_TTL_S", str(24 * 3600)))

# --- Logs that name the job (issue 18, docs/operations.md#logs) ---
# Every line carries the job it is about (execution/job_logs.py). LOG_FORMAT=json
# writes one JSON object per line (python-json-logger); text is the default.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
# What a plugin may print per execution before its output is cut (kept on the job).
PLUGIN_OUTPUT_MAX_BYTES = int(os.environ.get("PLUGIN_OUTPUT_MAX_BYTES", str(64 * 1024)))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"job": {"()": "execution.job_logs.JobContextFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s%(job_context)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(job_id)s %(plugin)s "
            "%(attempt)s %(outcome)s %(request_id)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["job"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # The task engine's worker adds its own handler unless one is there: use ours.
    "loggers": {
        name: {"handlers": ["console"], "level": "INFO", "propagate": False}
        for name in ("django_tasks", "django_tasks_db")
    },
}

# Admin login lockout (docs/configuration.md, "Admin login lockout"): django-axes records
# failed logins in the database (shared by every process) and refuses a username from an
# address after ADMIN_LOGIN_FAILURE_LIMIT failures in a row, even with the right password,
# until ADMIN_LOGIN_COOLOFF_S have passed since the last failure. The address is the one
# the API's throttles use (API_NUM_PROXIES honoured), so behind nginx it is the client's.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("ADMIN_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(seconds=float(os.environ.get("ADMIN_LOGIN_COOLOFF_S", "900")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "execution.policy.throttling.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "execution/admin_lockout.html"
AXES_VERBOSE = False  # no banner at every process start; failures and lockouts still log

# Completion callbacks (docs/configuration.md, "Completion callbacks"): POST /v1/jobs may
# name a callback_url on one of these hosts (as ALLOWED_HOSTS: "hooks.example.com",
# ".example.com", "*"); empty: callbacks are refused. Loopback and private addresses
# are refused unless allowed. The key signs X-Signature (default: derived from SECRET_KEY).
CALLBACK_ALLOWED_HOSTS = env_list("CALLBACK_ALLOWED_HOSTS", [])
CALLBACK_ALLOW_PRIVATE_ADDRESSES = env_bool("CALLBACK_ALLOW_PRIVATE_ADDRESSES")
CALLBACK_SIGNING_KEY = os.environ.get("CALLBACK_SIGNING_KEY", "")
CALLBACK_TIMEOUT_S = float(os.environ.get("CALLBACK_TIMEOUT_S", "10"))
CALLBACK_RETRY_FIRST_DELAY_S = float(os.environ.get("CALLBACK_RETRY_FIRST_DELAY_S", "5"))
CALLBACK_RETRY_MAX_DELAY_S = float(os.environ.get("CALLBACK_RETRY_MAX_DELAY_S", "300"))
CALLBACK_RETRY_FOR_S = float(os.environ.get("CALLBACK_RETRY_FOR_S", "3600"))
