"""Threadline settings: one file, driven by environment variables (see README, "Configuration")."""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from config.env import env_bool, env_int, env_json, env_list, env_str, local_secret

# One BLAS thread per process, set before numpy loads (Django reads this file before any app
# code): a server's parallelism is its requests. OpenBLAS's own threads spin while they wait for
# each other; on a busy machine they stalled the embedding model's load (one 256 x 256 eigh) for
# over 30 s and starved the process's other threads meanwhile. An operator's value stands.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything Threadline writes at run time (SQLite, uploaded files, generated secrets) lives here.
DATA_DIR = Path(env_str("THREADLINE_DATA_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or local_secret(DATA_DIR / "secret_key")

HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", HOST])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "engine",
    "chat",
]

MIDDLEWARE = [
    # First: it shapes every error under the engine's paths, and refuses plain HTTP there
    # before SecurityMiddleware could redirect it.
    "engine.api.edge.engine_edge",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CSRF, which reads the body: an over-limit knowledge file is skipped as it arrives.
    "chat.middleware.knowledge_upload_limit",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "chat.signin.slow_failed_sign_ins",
    # Last, as django-axes asks: it turns a locked sign-in into the page that says until when.
    "axes.middleware.AxesMiddleware",
    # Innermost and sync only: the whole chain runs in one mode (config/middleware_mode.py).
    "config.middleware_mode.one_mode_chain",
]

# Where the engine is served: OpenAI's path, and Azure OpenAI's for code written for Azure.
ENGINE_URL_PREFIXES = ["v1/", "openai/"]
ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'threadline.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
# Request threads kept idle between requests, each with its database connection open
# (config/request_threads.py): with PostgreSQL, up to this many connections per process at rest.
IDLE_REQUEST_THREADS = env_int("THREADLINE_IDLE_REQUEST_THREADS", 32)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers (polling clients) proceed while a run writes; IMMEDIATE avoids
        # "database is locked" when two writers upgrade read transactions at once.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Redis pub/sub: a live event is one PUBLISH, and each process that follows the
            # answer gets it at once and hands it to its streams. The list-based layer took
            # three Redis round trips per message per process, one message at a time: with 200
            # answers across two processes, p99 gaps reached 3 s (bench/scale_out.py). What
            # pub/sub does not keep (a process not yet subscribed), the replay log has.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # A command that gets no answer fails instead of hanging the stream.
                        "socket_timeout": 15,
                        # redis-py's asyncio pool refuses a 101st command in flight by default
                        # (MaxConnectionsError): about one per live answer at peak.
                        "max_connections": 1000,
                        # A pooled connection that Redis closed (a restart, an idle timeout) is
                        # replaced and the command sent again once. redis-py 8.1's asyncio pool
                        # no longer replaces such a connection before use when RESP3 turns on
                        # maintenance notifications (redis/redis-py#4252), and without a retry
                        # the first PUBLISH after a Redis restart failed. A PUBLISH sent twice
                        # is harmless: streams skip an event id they have sent.
                        "retry": Retry(NoBackoff(), 1),
                    }
                ],
            },
        }
    }
else:
    # In-memory, for one process; chat.live.layers explains why not Channels' own.
    CHANNEL_LAYERS = {"default": {"BACKEND": "chat.live.layers.LocalChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in throttling, the chat's and the admin's (chat/signin.py): django-axes refuses a sign-in
# for a locked account or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("THREADLINE_SIGNIN_FAILURES", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("THREADLINE_SIGNIN_LOCK_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each counted on its own
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the time the page gives holds
AXES_LOCKOUT_CALLABLE = "chat.signin.locked_out"
AXES_CLIENT_IP_CALLABLE = "chat.signin.client_address"
AXES_VERBOSE = False  # no banner on every management command
# Proxies in front that append the client's address to X-Forwarded-For (nginx:
# proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for); 0 trusts no such header.
PROXIES = env_int("THREADLINE_PROXIES", 0)
# Sessions are read on every chat request, the live streams' too: from the cache, not the DB.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Security. Cookies and HSTS need TLS: set THREADLINE_HTTPS=1 when served behind HTTPS.
HTTPS = env_bool("THREADLINE_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
# Not redirected: engine clients over plain HTTP are refused (engine.api.edge), except the
# server's own chat, which calls its engine on this machine.
SECURE_REDIRECT_EXEMPT = [rf"^{prefix}" for prefix in ENGINE_URL_PREFIXES]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Every page, the chat's, sign-in and the admin's: scripts and styles only from our own static
# files (nothing inline, no eval), so HTML that slips past the markdown sanitiser cannot run or
# restyle anything. Responses that set a policy of their own (file downloads) keep theirs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
    }
}
SECURE_REFERRER_POLICY = "same-origin"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- Engine (the embedded Assistants API v2) --------------------------------------------------
# Bearer keys accepted for the default project, besides the hashed keys admins create.
THREADLINE_API_KEYS = env_list("THREADLINE_API_KEYS")
# Requests per key ("600/minute") for stored keys without a rate of their own; "" for no limit.
# Checked when the engine starts (engine.apps).
API_RATE_LIMIT = env_str("THREADLINE_API_RATE_LIMIT")
RUN_EXPIRES_SECONDS = env_int("THREADLINE_RUN_EXPIRES_SECONDS", 600)
# A run whose worker has not reported for this long is taken as lost (crash, restart).
RUN_STALE_SECONDS = env_int("THREADLINE_RUN_STALE_SECONDS", 30)
# A run whose stores still ingest files waits this long for them before it answers.
RUN_INGEST_WAIT_SECONDS = env_int("THREADLINE_RUN_INGEST_WAIT_SECONDS", 60)
MAX_UPLOAD_BYTES = env_int("THREADLINE_MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
# Semantic search's embedding model: `local` (bundled with the install, offline), `api:<model>`
# (the model API's /v1/embeddings) or `off` (full-text only). A change re-embeds in the background.
EMBEDDINGS = env_str("THREADLINE_EMBEDDINGS", "local").strip() or "local"
if EMBEDDINGS not in ("local", "off") and not (
    EMBEDDINGS.startswith("api:") and EMBEDDINGS[4:].strip()
):
    raise ImproperlyConfigured(
        f"THREADLINE_EMBEDDINGS must be local, off or api:<model> "
        f"(e.g. api:text-embedding-3-small); got {EMBEDDINGS!r}"
    )
FILES_DIR = DATA_DIR / "files"

# The model API the engine calls; unset means the offline retrieval-only model.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
AZURE_OPENAI_ENDPOINT = env_str("AZURE_OPENAI_ENDPOINT")
AZURE_OPENAI_API_KEY = env_str("AZURE_OPENAI_API_KEY")
OPENAI_API_VERSION = env_str("OPENAI_API_VERSION", "2024-10-21")
MODEL_TIMEOUT_SECONDS = env_int("THREADLINE_MODEL_TIMEOUT_SECONDS", 60)
MODEL_MAX_RETRIES = env_int("THREADLINE_MODEL_MAX_RETRIES", 2)
# Context window assumed for truncation_strategy "auto" when the model's is unknown.
MODEL_CONTEXT_TOKENS = env_int("THREADLINE_MODEL_CONTEXT_TOKENS", 128_000)
DEFAULT_MODEL = env_str("THREADLINE_DEFAULT_MODEL", "gpt-4o-mini")

# Code interpreter: model-written Python runs in a bubblewrap sandbox per thread
# (engine/tools/code_interpreter). "auto" uses it where the sandbox can start; "off" never does.
CODE_INTERPRETER = env_str("THREADLINE_CODE_INTERPRETER", "auto").strip().lower()
if CODE_INTERPRETER not in ("auto", "off"):
    raise ImproperlyConfigured(
        f"THREADLINE_CODE_INTERPRETER must be auto or off; got {CODE_INTERPRETER!r}"
    )
# The sandbox's own Python environment, built by `make` (never at run time).
CODE_INTERPRETER_ENV = Path(
    env_str("THREADLINE_CODE_INTERPRETER_ENV", str(BASE_DIR / ".venv-sandbox"))
)
CODE_INTERPRETER_TIMEOUT_SECONDS = env_int("THREADLINE_CODE_INTERPRETER_TIMEOUT_SECONDS", 60)
CODE_INTERPRETER_IDLE_SECONDS = env_int("THREADLINE_CODE_INTERPRETER_IDLE_SECONDS", 30 * 60)
CODE_INTERPRETER_LIFETIME_SECONDS = env_int("THREADLINE_CODE_INTERPRETER_LIFETIME_SECONDS", 60 * 60)
CODE_INTERPRETER_MEMORY_MB = env_int("THREADLINE_CODE_INTERPRETER_MEMORY_MB", 2048)
CODE_INTERPRETER_DISK_MB = env_int("THREADLINE_CODE_INTERPRETER_DISK_MB", 256)
CODE_INTERPRETER_CPU_SECONDS = env_int("THREADLINE_CODE_INTERPRETER_CPU_SECONDS", 600)
CODE_INTERPRETER_PROCESSES = env_int("THREADLINE_CODE_INTERPRETER_PROCESSES", 64)
CODE_INTERPRETER_OUTPUT_BYTES = env_int("THREADLINE_CODE_INTERPRETER_OUTPUT_BYTES", 64 * 1024)
CODE_INTERPRETER_FILE_MB = env_int("THREADLINE_CODE_INTERPRETER_FILE_MB", 64)
CODE_INTERPRETER_SESSIONS = env_int("THREADLINE_CODE_INTERPRETER_SESSIONS", 16)
CODE_INTERPRETER_WARM_SESSIONS = env_int("THREADLINE_CODE_INTERPRETER_WARM_SESSIONS", 1)

# --- Chat frontend ----------------------------------------------------------------------------
_own_host = "127.0.0.1" if HOST in ("", "0.0.0.0", "::") else HOST  # noqa: S104
ASSISTANTS_URL = env_str("THREADLINE_ASSISTANTS_URL", f"http://{_own_host}:{PORT}/v1")
ASSISTANTS_KEY_FILE = DATA_DIR / "frontend-engine.key"
ASSISTANTS_KEY = env_str("THREADLINE_ASSISTANTS_KEY") or (
    ASSISTANTS_KEY_FILE.read_text().strip() if ASSISTANTS_KEY_FILE.exists() else ""
)
SIGNUP_ENABLED = env_bool("THREADLINE_SIGNUP", False)
# Patience with the Assistants API for one request; a streaming run's reads wait much longer.
ASSISTANTS_TIMEOUT_SECONDS = env_int("THREADLINE_ASSISTANTS_TIMEOUT_SECONDS", 30)
CHAT_MAX_MESSAGE_CHARS = env_int("THREADLINE_CHAT_MAX_MESSAGE_CHARS", 32_000)
CHAT_MAX_UPLOAD_BYTES = env_int("THREADLINE_CHAT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
# Knowledge files admins upload for an assistant (the embedded engine takes up to MAX_UPLOAD_BYTES).
KNOWLEDGE_MAX_UPLOAD_BYTES = env_int("THREADLINE_KNOWLEDGE_MAX_UPLOAD_BYTES", MAX_UPLOAD_BYTES)
# How many knowledge files one save of an assistant may add (its request's size follows).
KNOWLEDGE_MAX_FILES = env_int("THREADLINE_KNOWLEDGE_MAX_FILES", 20)
# Knowledge files kept while the Assistants API is down or refuses them, until a sync uploads
# them. Never under a served path.
KNOWLEDGE_WAITING_DIR = DATA_DIR / "knowledge-waiting"
# Estimated cost per run in the admin: {"model": [input $ per 1M tokens, output $ per 1M]}.
MODEL_PRICES = env_json("THREADLINE_MODEL_PRICES", {})
CHAT_MAX_FILES = env_int("THREADLINE_CHAT_MAX_FILES", 10)
# How long sending waits for attachments to become searchable before the answer starts.
CHAT_INGEST_WAIT_SECONDS = env_int("THREADLINE_CHAT_INGEST_WAIT_SECONDS", 60)

# The chat keeps each live answer's replay log here, so a reload or a second tab sees all of it.
# Several server processes must share it: with REDIS_URL, Redis; otherwise this process's memory.
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            # Replay logs are bounded per run (chat.live.replay), but hundreds of runs can be live.
            "OPTIONS": {"MAX_ENTRIES": 200_000},
        }
    }

# --- Function calls the chat answers (chat.tools) ---------------------------------------------
# Python functions to offer in the registry, as dotted paths (besides those an app registers
# with the @chat.tools.python.function decorator in its `functions` module).
PYTHON_FUNCTIONS = env_list("THREADLINE_PYTHON_FUNCTIONS")
# Webhooks never reach link-local or metadata addresses; private and loopback ones only for the
# host names (or addresses) listed here.
WEBHOOK_ALLOWED_HOSTS = env_list("THREADLINE_WEBHOOK_ALLOWED_HOSTS")
# The largest output a function may give the model (a webhook's answer is not read past it).
FUNCTION_MAX_OUTPUT_BYTES = env_int("THREADLINE_FUNCTION_MAX_OUTPUT_BYTES", 256 * 1024)
