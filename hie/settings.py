"""Settings for the HIE node, read from the environment.

With nothing set the node runs on SQLite under ./data with Celery tasks executed inline,
so one command starts a working demo. Production (HIE_PRODUCTION=true) refuses unsafe values.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
INSECURE_DEV_KEY = "django-insecure-local-development-key-never-use-in-production"


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_number(name: str, default: float, cast: type = int) -> float:
    value = os.environ.get(name)
    try:
        return cast(value) if value else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a {'whole ' if cast is int else ''}number") from exc


def env_int(name: str, default: int) -> int:
    return env_number(name, default, int)


def env_float(name: str, default: float) -> float:
    return env_number(name, default, float)


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


PRODUCTION = env_bool("HIE_PRODUCTION", False)
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY", INSECURE_DEV_KEY)

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off when HIE_PRODUCTION is set")
    if SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("SECRET_KEY must be a random value of at least 50 characters in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "oauth2_provider",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "hie.orgs",
    "hie.audit",
    "hie.console",
    "hie.fhir",
    "hie.hl7v2",
    "hie.locator",
    "hie.exchange",
    "matching",
    "consent",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "hie.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "hie.urls"
WSGI_APPLICATION = "hie.wsgi.application"

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
                "hie.console.roles.roles_context",
            ],
        },
    },
]

# Databases: DATABASE_URL selects PostgreSQL; without it, SQLite in ./data.
DATA_DIR = Path(env("HIE_DATA_DIR", str(BASE_DIR / "data")))
DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "hie.sqlite3",
            # A file, not memory, so a Celery worker process can share the test database.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A second writer would otherwise fail at once with "database is locked": IMMEDIATE takes
    # the write lock at BEGIN and waits up to the timeout for it; WAL lets readers continue.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a health check that asks a connection at most once a window
    # (hie/db/postgresql/base.py): the check is a round trip at the start of every request.
    DATABASES["default"]["ENGINE"] = "hie.db.postgresql"
    if env_bool("DB_SERVER_SIDE_BINDING", True):
        # Server-side parameter binding lets psycopg prepare a query the fifth time a connection
        # runs it, so the hot look-ups (tokens, PIXm, candidates) skip planning. Turn it off
        # behind a pooler in transaction mode, which cannot keep prepared statements.
        DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
# A persistent connection that answered within this many seconds is not asked again (SELECT 1)
# before the next request uses it.
DB_HEALTH_CHECK_SECONDS = env_float("DB_HEALTH_CHECK_SECONDS", 1.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "console:login"
# Console sign-in: failed logins per user name and address are throttled; a TOTP second factor
# (django-otp) is used by whoever enrolled one, and required of everyone when this is on
# (administrators can also require it of one staff member in the console).
# Record locator: calls to custodians (members' FHIR servers) for document content.
# The MLLP listener reads a sending facility's member again after this many seconds (0: every batch).
HL7_MEMBER_CACHE_SECONDS = env_float("HL7_MEMBER_CACHE_SECONDS", 5.0)
# A framed message over this size is answered AR (its first 64 KiB are kept in the inbox); a
# message begun must end within the frame timeout, or the connection is closed.
HL7_MAX_MESSAGE_BYTES = env_int("HL7_MAX_MESSAGE_BYTES", 4 * 1024 * 1024)
HL7_FRAME_TIMEOUT_SECONDS = env_float("HL7_FRAME_TIMEOUT_SECONDS", 30.0)
CUSTODIAN_TIMEOUT_SECONDS = env_float("CUSTODIAN_TIMEOUT_SECONDS", 10.0)
CUSTODIAN_MAX_DOCUMENT_BYTES = env_int("CUSTODIAN_MAX_DOCUMENT_BYTES", 50 * 1024 * 1024)
CUSTODIAN_MAX_PAGES = env_int("CUSTODIAN_MAX_PAGES", 20)
# Gather jobs: attempts per custodian, exponential backoff with jitter, and the circuit breaker.
EXCHANGE_MAX_ATTEMPTS = env_int("EXCHANGE_MAX_ATTEMPTS", 4)
EXCHANGE_BACKOFF_SECONDS = env_float("EXCHANGE_BACKOFF_SECONDS", 2.0)
EXCHANGE_BACKOFF_MAX_SECONDS = env_float("EXCHANGE_BACKOFF_MAX_SECONDS", 60.0)
EXCHANGE_BREAKER_FAILURES = env_int("EXCHANGE_BREAKER_FAILURES", 5)
EXCHANGE_BREAKER_COOLDOWN_SECONDS = env_int("EXCHANGE_BREAKER_COOLDOWN_SECONDS", 60)
EXCHANGE_DEFAULT_DEADLINE_SECONDS = env_int("EXCHANGE_DEFAULT_DEADLINE_SECONDS", 60)
# Notifications to members' webhooks: attempts (with the same backoff) and the wait for an answer.
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 6)
NOTIFY_TIMEOUT_SECONDS = env_float("NOTIFY_TIMEOUT_SECONDS", 5.0)
CONSOLE_LOGIN_FAILURE_LIMIT = env_int("CONSOLE_LOGIN_FAILURE_LIMIT", 5)
CONSOLE_LOGIN_FAILURE_WINDOW = env_int("CONSOLE_LOGIN_FAILURE_WINDOW", 900)  # seconds
CONSOLE_REQUIRE_TOTP = env_bool("CONSOLE_REQUIRE_TOTP", False)
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", "HIE node")
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "console:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Uploaded files (scanned consent forms): kept out of the web root and served only by views that check roles.
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(DATA_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # production fills it with collectstatic

# Transport security. Production serves HTTPS only (usually behind a TLS proxy);
# the probes stay reachable over plain HTTP for the orchestrator.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", PRODUCTION) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
X_FRAME_OPTIONS = "DENY"

# Canonical base of the node's own FHIR definitions (extensions, identifier systems such as the EUID).
HIE_CANONICAL_BASE = env("HIE_CANONICAL_BASE", "https://hie.example.org/fhir")

# OAuth2: one API client per member organization, client credentials only.
OAUTH2_PROVIDER_APPLICATION_MODEL = "orgs.ApiClient"
FHIR_SCOPES = {
    "system/Patient.read": "Read patient identities (PIXm, PDQm, $match)",
    "system/Patient.write": "Register and update patients (identity feed)",
    "system/DocumentReference.read": "Find and retrieve documents (MHD)",
    "system/DocumentReference.write": "Register documents (MHD)",
    "system/Consent.read": "Read consents",
    "system/Consent.write": "Record consents",
    "system/Organization.read": "Read the member directory",
}
OAUTH2_PROVIDER = {
    "SCOPES": FHIR_SCOPES,
    "SCOPES_BACKEND_CLASS": "hie.orgs.scopes.ApiClientScopes",
    # SMART Backend Services private_key_jwt beside shared secrets (hie/orgs/oauth.py).
    "OAUTH2_VALIDATOR_CLASS": "hie.orgs.oauth.ApiClientValidator",
    "OAUTH2_BACKEND_CLASS": "hie.orgs.oauth.AbsoluteUriOAuthLibCore",
    # SMART backend services: access tokens live at most five minutes.
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("ACCESS_TOKEN_EXPIRE_SECONDS", 300),
    "ALLOWED_GRANT_TYPES": ["client_credentials"],
    # OAuth 2.0 Security BCP (RFC 9700): tokens hashed at rest, only in the Authorization
    # header, and none of the browser-flow weaknesses (those flows are not offered at all).
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    "PKCE_REQUIRED": True,
}
# Clients' JWKS URLs (SMART client-confidential-asymmetric): fetched with this timeout, at most
# this many bytes, kept this long; plain http only outside production.
JWKS_FETCH_TIMEOUT_SECONDS = env_float("JWKS_FETCH_TIMEOUT_SECONDS", 5)
JWKS_MAX_BYTES = env_int("JWKS_MAX_BYTES", 65536)
JWKS_CACHE_SECONDS = env_int("JWKS_CACHE_SECONDS", 300)
JWKS_ALLOW_HTTP = env_bool("JWKS_ALLOW_HTTP", not PRODUCTION)
if PRODUCTION and JWKS_ALLOW_HTTP:
    raise ImproperlyConfigured("JWKS_ALLOW_HTTP must be false in production")

# FHIR API conventions. Every read has a purpose of use (HL7 v3 PurposeOfUse codes): the one its
# access token carries, else its member's default (new members get FHIR_DEFAULT_PURPOSE_OF_USE;
# "" makes every read name one), and X-Purpose-Of-Use may narrow it to another purpose granted
# to the client. Each API client may send FHIR_RATE_LIMIT requests per FHIR_RATE_WINDOW seconds
# (0: no limit), counted in the cache shared by all web processes.
FHIR_PURPOSES_OF_USE = {
    "TREAT": "treatment",
    "ETREAT": "emergency treatment",
    "BTG": "break the glass",
    "CAREMGT": "care management",
    "COC": "coordination of care",
    "HPAYMT": "healthcare payment",
    "CLMATTCH": "claim attachment",
    "COVERAGE": "coverage under policy or program",
    "HOPERAT": "healthcare operations",
    "HQUALIMP": "healthcare quality improvement",
    "PUBHLTH": "public health",
    "POPHLTH": "population health",
    "HRESCH": "healthcare research",
    "PATRQT": "patient requested",
    "FAMRQT": "family requested",
    "PWATRNY": "power of attorney",
    "HLEGAL": "legal",
    "HCOMPL": "compliance",
    "HSYSADMIN": "system administration",
}
FHIR_DEFAULT_PURPOSE_OF_USE = env("FHIR_DEFAULT_PURPOSE_OF_USE", "TREAT")
if FHIR_DEFAULT_PURPOSE_OF_USE and FHIR_DEFAULT_PURPOSE_OF_USE not in FHIR_PURPOSES_OF_USE:
    raise ImproperlyConfigured("FHIR_DEFAULT_PURPOSE_OF_USE must be an HL7 PurposeOfUse code the node knows, or empty")
FHIR_RATE_LIMIT = env_int("FHIR_RATE_LIMIT", 1200)
FHIR_RATE_WINDOW = env_int("FHIR_RATE_WINDOW", 60)
FHIR_MAX_PAGE_SIZE = 100
# The largest FHIR request body read (bytes), after the caller's token is checked: an ITI-65
# Bundle carries a document by value in base64 (4/3 of its size), so 20 MiB takes a document of
# about 15 MB; larger ones are registered by reference. Beyond it: 413. Every other endpoint
# keeps Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB).
FHIR_MAX_BODY_BYTES = env_int("FHIR_MAX_BODY_BYTES", 20 * 1024 * 1024)
FHIR_SEARCH_MAX_MATCHES = env_int("FHIR_SEARCH_MAX_MATCHES", 1000)  # broader PDQm searches must be narrowed

# Consent (consent/decide.py, docs/consent.md): the implicit policy when no consent speaks
# (all-normal, basic-normal, break-glass-only or deny; a member may set its own), the purposes
# all-normal permits, and what break-the-glass may open besides normal and restricted data.
CONSENT_IMPLICIT_POLICY = env("CONSENT_IMPLICIT_POLICY", "all-normal")
if CONSENT_IMPLICIT_POLICY not in {"all-normal", "basic-normal", "break-glass-only", "deny"}:
    raise ImproperlyConfigured("CONSENT_IMPLICIT_POLICY must be all-normal, basic-normal, break-glass-only or deny")
CONSENT_IMPLICIT_PURPOSES = set(
    env_list("CONSENT_IMPLICIT_PURPOSES", "TREAT,ETREAT,HPAYMT,HOPERAT,PUBHLTH,PATRQT,COC,CAREMGT")
)
BREAK_GLASS_OVERRIDES_DENY = env_bool("BREAK_GLASS_OVERRIDES_DENY", False)
BREAK_GLASS_OPENS_PART2 = env_bool("BREAK_GLASS_OPENS_PART2", False)
BREAK_GLASS_MAX_MINUTES = env_int("BREAK_GLASS_MAX_MINUTES", 240)

# The cache holds the rate-limit counters: Redis when CACHE_URL is set (shared by every web
# process), process memory otherwise.
CACHE_URL = env("CACHE_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HIE node operations API",
    "DESCRIPTION": "Non-FHIR endpoints of the node. FHIR endpoints are described by /fhir/metadata.",
    "VERSION": "0.1.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "hie.openapi.add_oauth_endpoints"],
}

# Celery: a broker URL means separate workers; none means tasks run inline (demo mode).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", env("REDIS_URL"))
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", "hie")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_BEAT_SCHEDULE = {
    "verify-audit-chain": {"task": "hie.audit.tasks.verify_audit_chain", "schedule": 3600.0},
    "sweep-pending-matches": {"task": "matching.tasks.sweep_pending_matches", "schedule": 60.0},
    "sweep-hl7-inbox": {"task": "hie.hl7v2.tasks.sweep_inbox", "schedule": 60.0},
    "sweep-gather-jobs": {"task": "hie.exchange.tasks.sweep_gather_jobs", "schedule": 15.0},
    "dispatch-outbox": {"task": "hie.exchange.tasks.dispatch_outbox_task", "schedule": 15.0},
}

# Matching: a pair's match probability at or above the first links automatically; between the
# two opens a review task; below the second starts a new person. docs/benchmarks.md reports the
# precision, recall and review load that choices of these give.
MATCH_AUTO_LINK_THRESHOLD = env_float("MATCH_AUTO_LINK_THRESHOLD", 0.95)
MATCH_REVIEW_THRESHOLD = env_float("MATCH_REVIEW_THRESHOLD", 0.50)
MATCH_POSSIBLE_THRESHOLD = env_float("MATCH_POSSIBLE_THRESHOLD", 0.05)  # $match grade "possible"
MATCH_BLOCK_CAP = env_int("MATCH_BLOCK_CAP", 500)  # larger blocks are skipped and reported
if not 0 < MATCH_REVIEW_THRESHOLD <= MATCH_AUTO_LINK_THRESHOLD < 1:
    raise ImproperlyConfigured("need 0 < MATCH_REVIEW_THRESHOLD <= MATCH_AUTO_LINK_THRESHOLD < 1")

LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "hie.requestid.RequestIdLogFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own request logger repeats the path with its query string; ours does not.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        # An eager task runs inside the request or command that queued it, and Celery's line for
        # its success repeats its arguments in full (a batch's record ids): its failures still show.
        **({"celery.app.trace": {"level": "WARNING"}} if CELERY_TASK_ALWAYS_EAGER else {}),
    },
}

# Rate limiting and other per-client policy arrive with the member API.
