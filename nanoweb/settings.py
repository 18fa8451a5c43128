"""nanoweb settings: one file, driven by environment variables.

Every variable is documented in README.md ("Configuration"). With none set, the
embedded default runs: SQLite, a filesystem Celery broker and media under var/.
"""

import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
# Whatever this process creates (the SQLite database, keys, media, broker messages)
# is readable by its owner and group only: files 0640 (secrets 0600), folders 0750.
os.umask(0o027)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# pytest (which sets PYTEST_VERSION) gets its own var/ so a running instance is never touched.
_DEFAULT_VAR = BASE_DIR / "var" / ("test" if "PYTEST_VERSION" in os.environ else "")
VAR_DIR = Path(env.str("NANOWEB_VAR_DIR", default=str(_DEFAULT_VAR))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)
VAR_DIR.chmod(0o750)


def _var_secret(name: str, make) -> str:
    """Read a generated secret from var/, creating it once (first embedded run)."""
    path = VAR_DIR / name
    try:
        fd = path.open("x")  # exclusive create: concurrent first starts agree on one value
    except FileExistsError:
        return path.read_text().strip()
    with fd:
        value = make()
        fd.write(value + "\n")
    path.chmod(0o600)
    return value


SECRET_KEY = env.str("SECRET_KEY", default="") or _var_secret(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
DEBUG = env.bool("DEBUG", default=False)
HOST = env.str("HOST", default="127.0.0.1")
PORT = env.int("PORT", default=8000)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", HOST])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "csp",
    "django_htmx",
    "template_partials",
    "ninja",
    "nanoweb",
    "accounts",
    "generations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.preferences.PreferencesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.signin.RequireMfaMiddleware",
    "accounts.signin.AccountPagesNoStoreMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "nanoweb.urls"
WSGI_APPLICATION = "nanoweb.wsgi.application"
ASGI_APPLICATION = "nanoweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "nanoweb.context_processors.nanoweb",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# SQLite (embedded default): WAL so readers never block the writer, IMMEDIATE
# transactions so two writers queue on the busy timeout instead of failing with
# "database is locked" when a read transaction tries to upgrade.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'nanoweb.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so integration tests can share it with a worker process.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-nanoweb.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "generations:studio"
LOGOUT_REDIRECT_URL = "account_login"
# allauth's backend is Django's ModelBackend plus sign-in by email; one backend, so a
# password is hashed once per attempt.
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]

# --- Sign-in (django-allauth) -------------------------------------------------------
# Email + password; no usernames. Open sign-up is off: people join by invitation
# (admin → Invitations), or through Google Workspace / OpenID Connect for a team
# whose sign-in domain matches. Every sign-in form, the admin's included, is throttled.
ACCOUNT_ADAPTER = "accounts.signin.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.signin.SocialAccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_PREVENT_ENUMERATION = True
NANOWEB_OPEN_SIGNUP = env.bool("NANOWEB_OPEN_SIGNUP", default=False)
# Failed sign-ins per address (key) and per IP; password resets likewise. A blocked
# address gets "Too many failed attempts" until the window passes, without a hash.
ACCOUNT_RATE_LIMITS = {
    "login": env.str("NANOWEB_RATE_LOGIN", default="30/m/ip"),
    "login_failed": env.str("NANOWEB_RATE_LOGIN_FAILED", default="10/m/ip,5/5m/key"),
    "reset_password": env.str("NANOWEB_RATE_RESET_PASSWORD", default="20/m/ip,3/15m/key"),
}  # the other limits keep allauth's defaults
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True  # a verified provider address signs its owner in
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": []}}
# Google sign-in (an OpenID Connect app "google"); only accounts of a Workspace domain
# that a team has as its sign-in domain get in (the `hd` claim, checked server-side).
NANOWEB_GOOGLE_CLIENT_ID = env.str("NANOWEB_GOOGLE_CLIENT_ID", default="")
NANOWEB_GOOGLE_CLIENT_SECRET = env.str("NANOWEB_GOOGLE_CLIENT_SECRET", default="")
NANOWEB_GOOGLE_SERVER_URL = env.str(
    "NANOWEB_GOOGLE_SERVER_URL", default="https://accounts.google.com"
)
if NANOWEB_GOOGLE_CLIENT_ID:
    SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"].append(
        {
            "provider_id": "google",
            "name": "Google",
            "client_id": NANOWEB_GOOGLE_CLIENT_ID,
            "secret": NANOWEB_GOOGLE_CLIENT_SECRET,
            "settings": {"server_url": NANOWEB_GOOGLE_SERVER_URL, "google": True},
        }
    )
# A generic OpenID Connect provider: Keycloak, Authentik, Feishu/Lark, DingTalk, …
NANOWEB_OIDC_SERVER_URL = env.str("NANOWEB_OIDC_SERVER_URL", default="")
if NANOWEB_OIDC_SERVER_URL:
    SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"].append(
        {
            "provider_id": env.str("NANOWEB_OIDC_ID", default="oidc"),
            "name": env.str("NANOWEB_OIDC_NAME", default="Single sign-on"),
            "client_id": env.str("NANOWEB_OIDC_CLIENT_ID", default=""),
            "secret": env.str("NANOWEB_OIDC_CLIENT_SECRET", default=""),
            "settings": {"server_url": NANOWEB_OIDC_SERVER_URL},
        }
    )
# Two-step sign-in: authenticator apps (TOTP), security keys and passkeys (WebAuthn),
# recovery codes. With NANOWEB_REQUIRE_MFA_FOR_STAFF, staff set one up before anything else.
MFA_SUPPORTED_TYPES = ["totp", "webauthn", "recovery_codes"]
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_TOTP_ISSUER = env.str("NANOWEB_MFA_ISSUER", default="nanoweb")
# Plain-http origins (make run on 127.0.0.1) only while cookies are not https-only.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not env.bool("SECURE_COOKIES", default=False)
NANOWEB_REQUIRE_MFA_FOR_STAFF = env.bool("NANOWEB_REQUIRE_MFA_FOR_STAFF", default=False)
NANOWEB_INVITATION_DAYS = env.int("NANOWEB_INVITATION_DAYS", default=14)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Cache ----------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "nanoweb_cache",
        }
    }

# --- Files ------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # filled by collectstatic at start-up
# Media is private: there is deliberately no MEDIA_URL route; files are streamed
# by views that check ownership.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
# Django sets these modes itself (0644 by default), whatever the umask above says.
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750

# --- Email ------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="nanoweb <nanoweb@localhost>")

# The language comes from the person's choice (their account), else the browser's
# Accept-Language; the time zone from their choice, else the browser's. TIME_ZONE is
# only the default for people who have neither.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "nanoweb" / "locale"]
FORMAT_MODULE_PATH = ["nanoweb.formats"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_PROXY", default=False) else None
)
# Proxies in front that append to X-Forwarded-For: the sign-in throttle counts per
# client IP, so behind nginx it must read the client's address, not the proxy's.
ALLAUTH_TRUSTED_PROXY_COUNT = env.int(
    "TRUSTED_PROXY_COUNT", default=1 if env.bool("BEHIND_PROXY", default=False) else 0
)
X_FRAME_OPTIONS = "DENY"
# For a proxy other than the bundled nginx (which redirects and sets HSTS itself).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Content-Security-Policy: scripts and styles only from this site (no inline script, no
# event-handler attributes); style attributes carry per-image sizes, so they may stay.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Celery -----------------------------------------------------------------------
# The embedded broker's URL names a host (unused) so kombu does not warn, at every
# connection, that none was supplied.
CELERY_BROKER_URL = (
    env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://localhost/"
)
CELERY_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT = "nanoweb.broker:Transport"  # atomic writes (see broker.py)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
        # How often the worker looks for new messages (kombu's default is 1 s).
        "polling_interval": env.float("NANOWEB_BROKER_POLL_SECONDS", default=0.05),
    }
else:
    # Countdowns must stay below this, or Redis redelivers the ETA message early.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=330)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=4)

# --- nanoweb ----------------------------------------------------------------------
# Fernet keys (comma-separated, newest first) that encrypt provider keys at rest.
NANOWEB_ENCRYPTION_KEYS = env.list("NANOWEB_ENCRYPTION_KEYS", default=[])
NANOWEB_ENCRYPTION_KEY_FILE = VAR_DIR / "encryption_keys"
# Where people reach this instance; used for links in emails (budget alerts).
NANOWEB_BASE_URL = env.str("NANOWEB_BASE_URL", default=f"http://{HOST}:{PORT}")
NANOWEB_ADMIN_EMAIL = env.str("NANOWEB_ADMIN_EMAIL", default="admin@example.com")
NANOWEB_ADMIN_PASSWORD = env.str("NANOWEB_ADMIN_PASSWORD", default="")
GEMINI_API_KEY = env.str("GEMINI_API_KEY", default="")
GEMINI_BASE_URL = env.str("GEMINI_BASE_URL", default="https://generativelanguage.googleapis.com")
# "auto": run and route to the sandbox upstream only while no real key is configured.
NANOWEB_SANDBOX = env.str("NANOWEB_SANDBOX", default="auto")
NANOWEB_SANDBOX_PORT = env.int("NANOWEB_SANDBOX_PORT", default=8765)
NANOWEB_SANDBOX_URL = env.str(
    "NANOWEB_SANDBOX_URL", default=f"http://127.0.0.1:{NANOWEB_SANDBOX_PORT}"
)

NANOWEB_QUOTA_TIMEZONE = env.str("NANOWEB_QUOTA_TIMEZONE", default="America/Los_Angeles")
NANOWEB_DEFAULT_DAILY_IMAGES = env.int("NANOWEB_DEFAULT_DAILY_IMAGES", default=50)
NANOWEB_DEFAULT_MONTHLY_BUDGET_USD = env.float("NANOWEB_DEFAULT_MONTHLY_BUDGET_USD", default=20.0)

NANOWEB_DEFAULT_MAX_CONCURRENT_JOBS = env.int("NANOWEB_DEFAULT_MAX_CONCURRENT_JOBS", default=8)
# An identical request within this many seconds offers the earlier result instead.
NANOWEB_DUPLICATE_WINDOW_SECONDS = env.int("NANOWEB_DUPLICATE_WINDOW_SECONDS", default=600)
NANOWEB_MAX_PROMPT_CHARS = env.int("NANOWEB_MAX_PROMPT_CHARS", default=8000)
# Google Search queries a grounded image is estimated to run (each is billed; the real
# count from the answer is what is charged).
NANOWEB_GROUNDING_ESTIMATE_QUERIES = env.int("NANOWEB_GROUNDING_ESTIMATE_QUERIES", default=3)
NANOWEB_MAX_UPLOAD_BYTES = env.int("NANOWEB_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
NANOWEB_MAX_IMAGE_PIXELS = env.int("NANOWEB_MAX_IMAGE_PIXELS", default=50_000_000)
NANOWEB_THUMBNAIL_SIZE = env.int("NANOWEB_THUMBNAIL_SIZE", default=512)
DATA_UPLOAD_MAX_MEMORY_SIZE = NANOWEB_MAX_UPLOAD_BYTES * 15 + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Gallery: images per page (keyset pagination), how long a deleted image can be undone
# before the purge task removes its files, and how many images one bulk action takes.
NANOWEB_GALLERY_PAGE_SIZE = env.int("NANOWEB_GALLERY_PAGE_SIZE", default=30)
NANOWEB_UNDO_SECONDS = env.int("NANOWEB_UNDO_SECONDS", default=900)
NANOWEB_BULK_MAX_IMAGES = env.int("NANOWEB_BULK_MAX_IMAGES", default=500)

# HTTP API: how long the synchronous endpoints wait for their images, how often the
# waiting requests look (one query for all of them), how long `url` links work.
NANOWEB_BATCH_MAX_ROWS = env.int("NANOWEB_BATCH_MAX_ROWS", default=200)
NANOWEB_BATCH_MAX_CSV_BYTES = env.int("NANOWEB_BATCH_MAX_CSV_BYTES", default=512 * 1024)
NANOWEB_API_WAIT_SECONDS = env.int("NANOWEB_API_WAIT_SECONDS", default=300)
NANOWEB_API_POLL_SECONDS = env.float("NANOWEB_API_POLL_SECONDS", default=0.025)
NANOWEB_API_URL_TTL_SECONDS = env.int("NANOWEB_API_URL_TTL_SECONDS", default=3600)
# The synchronous endpoints run a job's first attempt in the web process, in up to this
# many threads per process (each with its own database connection); 0 sends every
# attempt to the Celery workers (generations/api/inline.py).
NANOWEB_API_INLINE_THREADS = env.int("NANOWEB_API_INLINE_THREADS", default=32)

# Jobs: the database, not the broker, is the source of truth (see DESIGN.md).
# A worker claims a job for LEASE seconds and renews the lease every HEARTBEAT seconds
# while the attempt runs, however long the upstream takes (generations/leases.py).
# Beat sweeps every SWEEP seconds for leases that ran out, so a killed worker's job
# restarts within LEASE + SWEEP (+ about a second for the message): 15 + 5 s at worst,
# killed just after a renewal. A lease survives two missed heartbeats. A queued job
# whose message the broker lost (a killed worker held it, Redis restarted) is sent again
# REQUEUE_AFTER seconds after it was due; six times that while the broker still has
# messages waiting, where it may just be in line (engine.sweep).
NANOWEB_JOB_LEASE_SECONDS = env.int("NANOWEB_JOB_LEASE_SECONDS", default=15)
NANOWEB_JOB_HEARTBEAT_SECONDS = env.float("NANOWEB_JOB_HEARTBEAT_SECONDS", default=5.0)
NANOWEB_SWEEP_SECONDS = env.float("NANOWEB_SWEEP_SECONDS", default=5.0)
NANOWEB_JOB_MAX_ATTEMPTS = env.int("NANOWEB_JOB_MAX_ATTEMPTS", default=10)
NANOWEB_JOB_DEADLINE_SECONDS = env.int("NANOWEB_JOB_DEADLINE_SECONDS", default=1800)
NANOWEB_REQUEUE_AFTER_SECONDS = env.int("NANOWEB_REQUEUE_AFTER_SECONDS", default=20)
# Queue-style upstreams (fal.ai, Replicate): polls start after POLL_MIN seconds and
# space out with the request's age up to POLL_MAX (POLL_MAX_WEBHOOK when the provider
# calls back: polling is then only the fallback for a lost webhook).
NANOWEB_POLL_MIN_SECONDS = env.float("NANOWEB_POLL_MIN_SECONDS", default=1.0)
NANOWEB_POLL_MAX_SECONDS = env.float("NANOWEB_POLL_MAX_SECONDS", default=8.0)
NANOWEB_POLL_MAX_WEBHOOK_SECONDS = env.float("NANOWEB_POLL_MAX_WEBHOOK_SECONDS", default=60.0)
# How long a key whose account ran out of credit rests before it is tried again.
NANOWEB_CREDIT_REST_SECONDS = env.int("NANOWEB_CREDIT_REST_SECONDS", default=3600)
NANOWEB_BACKOFF_BASE_SECONDS = env.float("NANOWEB_BACKOFF_BASE_SECONDS", default=1.0)
NANOWEB_BACKOFF_CAP_SECONDS = env.float("NANOWEB_BACKOFF_CAP_SECONDS", default=32.0)
# Circuit breaker per route: open after N consecutive failures, or when at least
# MIN_CALLS calls in WINDOW seconds failed at FAILURE_RATE or more; stay open OPEN seconds.
NANOWEB_BREAKER_CONSECUTIVE = env.int("NANOWEB_BREAKER_CONSECUTIVE", default=10)
NANOWEB_BREAKER_FAILURE_RATE = env.float("NANOWEB_BREAKER_FAILURE_RATE", default=0.5)
NANOWEB_BREAKER_MIN_CALLS = env.int("NANOWEB_BREAKER_MIN_CALLS", default=5)
NANOWEB_BREAKER_WINDOW_SECONDS = env.float("NANOWEB_BREAKER_WINDOW_SECONDS", default=60.0)
# Each job counts once, and while another job succeeded on the route in the last VOUCH
# seconds it does not open: one person's always-failing prompts do not rest the route
# for everyone (generations/resilience/circuit.py).
NANOWEB_BREAKER_VOUCH_SECONDS = env.float("NANOWEB_BREAKER_VOUCH_SECONDS", default=10.0)
NANOWEB_BREAKER_OPEN_SECONDS = env.float("NANOWEB_BREAKER_OPEN_SECONDS", default=60.0)
# Where breaker and rate-limit state lives: "redis" when REDIS_URL is set, else "database".
NANOWEB_RESILIENCE_STORE = env.str(
    "NANOWEB_RESILIENCE_STORE", default="redis" if REDIS_URL else "database"
)
NANOWEB_REDIS_PREFIX = env.str("NANOWEB_REDIS_PREFIX", default="nanoweb:")
# Added to the 60 s rate window so a call granted just as an old one leaves it
# cannot reach the upstream a few milliseconds too early.
NANOWEB_RPM_MARGIN_SECONDS = env.float("NANOWEB_RPM_MARGIN_SECONDS", default=0.5)

# API tokens are stored as an HMAC under a key of their own (default: generated once
# into var/token_key), so rotating SECRET_KEY leaves them working; changing this key
# ends every token at once. Several web machines must share it, as they share
# SECRET_KEY. SECRET_KEY_FALLBACKS: earlier SECRET_KEYs, still accepted for sessions,
# signed links and tokens made before the token key existed.
NANOWEB_TOKEN_KEY = env.str("NANOWEB_TOKEN_KEY", default="") or _var_secret(
    "token_key", lambda: secrets.token_urlsafe(50)
)
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# Economy batches (Gemini Batch API, generations.economy): requests go inline while the
# create call stays under INLINE_BYTES (Google: 20 MB), else as a JSONL file; the batch is
# polled from POLL_MIN seconds after its submit, spacing out to POLL_MAX; a row waits at
# most DEADLINE seconds (Google expires a batch after 48 h) before it is refunded.
NANOWEB_ECONOMY_INLINE_BYTES = env.int("NANOWEB_ECONOMY_INLINE_BYTES", default=19_000_000)
NANOWEB_ECONOMY_POLL_MIN_SECONDS = env.float("NANOWEB_ECONOMY_POLL_MIN_SECONDS", default=30.0)
NANOWEB_ECONOMY_POLL_MAX_SECONDS = env.float("NANOWEB_ECONOMY_POLL_MAX_SECONDS", default=600.0)
NANOWEB_ECONOMY_DEADLINE_SECONDS = env.int("NANOWEB_ECONOMY_DEADLINE_SECONDS", default=50 * 3600)

# How long a web process trusts an API token it checked, with its
# user's row (revoking it there acts at once; elsewhere, and an admin's change of the
# user's limits, within this time). Off (0) until admission reads limits afresh.
NANOWEB_TOKEN_CACHE_SECONDS = env.float("NANOWEB_TOKEN_CACHE_SECONDS", default=0.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}},
}
