"""Settings from the environment.

Every setting is read here and nowhere else. ``load_config`` returns a plain dict that
``create_app`` puts into ``app.config``; a test passes its own overrides on top.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message says which and how to fix it."""


@dataclass(frozen=True)
class Setting:
    """One documented environment variable."""

    name: str
    default: str | None
    help: str


# The README's settings table is checked against this list by a test.
SETTINGS: tuple[Setting, ...] = (
    Setting("PORTAL_ENV", "development", "`development` or `production`."),
    Setting(
        "SECRET_KEY",
        None,
        "Signs session cookies and CSRF tokens. Required in production; generated into "
        "`instance/secret_key` in development.",
    ),
    Setting(
        "DATA_KEY",
        None,
        "32-byte AES-256-GCM key for stored blobs and MFA secrets, as base64 or 64 hex digits. "
        "Required in production; generated into `instance/data_key` in development.",
    ),
    Setting(
        "DATABASE_URL",
        "sqlite:///instance/portal.db",
        "SQLAlchemy URL. `postgresql://user:pass@host/db` uses psycopg 3.",
    ),
    Setting(
        "REDIS_URL",
        "",
        "Redis for the RQ job queues and rate limits. Empty: jobs run inline after each commit.",
    ),
    Setting("MAIL_SERVER", "", "SMTP host for outgoing mail. Empty: mail stays in the outbox."),
    Setting("MAIL_PORT", "587", "SMTP port."),
    Setting("MAIL_USERNAME", "", "SMTP user name, if the server needs one."),
    Setting("MAIL_PASSWORD", "", "SMTP password."),
    Setting("MAIL_USE_TLS", "true", "`true` to use STARTTLS."),
    Setting("MAIL_FROM", "Signing Portal <no-reply@localhost>", "From address of notifications."),
    Setting(
        "PUBLIC_BASE_URL",
        "http://127.0.0.1:5000",
        "Address customers and staff reach the portal at; used in links in emails.",
    ),
    Setting(
        "TRUSTED_PROXIES",
        "0",
        "How many reverse proxies in front of the portal set X-Forwarded-For/-Proto.",
    ),
    Setting("SESSION_IDLE_MINUTES", "30", "A staff session ends after this long without requests."),
    Setting("SESSION_ABSOLUTE_HOURS", "12", "A staff session ends this long after sign-in."),
    Setting("LOGIN_RATE_LIMIT", "20 per minute", "Sign-in attempts allowed per IP address."),
    Setting(
        "LOCKOUT_THRESHOLD",
        "5",
        "Failed password or code attempts on one account from one IP address (IPv6: one /64) "
        "before that address is locked out of that account.",
    ),
    Setting("LOCKOUT_MINUTES", "15", "How long an address stays locked out of an account."),
    Setting(
        "LOCKOUT_ACCOUNT_HOURLY",
        "100",
        "Failed attempts on one account within an hour, from all addresses together, after "
        "which only addresses the user signed in from in the last 30 days may try, for an hour.",
    ),
    Setting(
        "ORG_NAME", "Signing Portal", "Organisation name shown in pages and authenticator apps."
    ),
    Setting(
        "SEAL_PKCS12_PATH",
        "",
        "PKCS#12 (.p12/.pfx) file with the organisation's sealing certificate and key. Required "
        "in production (checked at start); development generates a self-signed one.",
    ),
    Setting("SEAL_PKCS12_PASSWORD", "", "Password of the PKCS#12 file."),
    Setting(
        "SEAL_TSA_URL",
        "",
        "RFC 3161 time-stamp authority URL. Set: seals are PAdES B-LTA (revocation data "
        "embedded, renewed before the timestamp expires); empty: PAdES B-B.",
    ),
    Setting(
        "SEAL_SWEEP_MINUTES",
        "5",
        "Completed envelopes still not sealed after this many minutes are sent to sealing again.",
    ),
    Setting(
        "COPY_ATTACH_MAX_MB",
        "5",
        "Signed copies up to this size are attached to the completion email; larger ones are "
        "sent as a download link.",
    ),
    Setting("COPY_LINK_DAYS", "7", "How long the download link in a completion email works."),
    Setting(
        "SIGNER_COPY_DAYS",
        "30",
        "How long signers can download their copy from the confirmation page after completion.",
    ),
    Setting(
        "SANDBOX_CPU_SECONDS",
        "20",
        "CPU seconds one check or rendering of an untrusted file may use in its sandbox.",
    ),
    Setting("SANDBOX_MEMORY_MB", "1024", "Memory one sandboxed check or rendering may use."),
    Setting(
        "SANDBOX_WALL_SECONDS",
        "",
        "Wall-clock seconds before a sandbox is killed. Empty: 1.5 x the CPU limit + 5.",
    ),
    Setting(
        "SANDBOX_CONCURRENCY",
        "",
        "Sandboxes running at once on one machine. Empty: the number of CPUs.",
    ),
    Setting(
        "BULK_MAIL_PER_MINUTE",
        "600",
        "Signing emails bulk send queues per minute, over all batches together (its envelopes "
        "are created at that pace); 0: no limit.",
    ),
    Setting(
        "SANDBOX_QUEUE_SECONDS",
        "30",
        "How long a check waits for a free sandbox before it is refused as busy.",
    ),
    # Records and compliance centre
    Setting(
        "RETENTION_DEFAULT_YEARS",
        "7",
        "Retention period of the default policy, which template versions that name no policy "
        "keep their envelopes under (years after the envelope ends).",
    ),
    Setting(
        "RETENTION_YEARS_RANGE",
        "2-7",
        "Periods (in years) a retention policy may have; admins may widen it up to 1-15.",
    ),
    Setting(
        "RETENTION_REVIEW_DAYS",
        "14",
        "Days between an envelope being listed as due for purge and the purge itself, for "
        "compliance to review (and postpone, with a reason).",
    ),
    Setting(
        "EXPORT_INLINE_ROWS",
        "5000",
        "Exports of up to this many rows download at once; larger ones run as a job with a "
        "progress bar and a download when ready.",
    ),
    Setting(
        "REPORT_MAX_ENVELOPES",
        "2000",
        "Envelopes listed in a compliance report (its totals count them all; the envelopes CSV "
        "export has the full list).",
    ),
    Setting(
        "API_RATE_LIMIT",
        "600 per minute",
        "Requests one API key may make (answered 429 with Retry-After and RateLimit headers).",
    ),
    Setting(
        "API_SEND_RATE_LIMIT",
        "60 per minute",
        "Envelopes and bulk batches one API key may create (on top of API_RATE_LIMIT).",
    ),
    Setting("API_MAX_BODY_MB", "5", "Largest API request body; larger ones are answered 413."),
    Setting(
        "WEBHOOK_ALLOWED_HOSTS",
        "",
        "Comma-separated hosts or networks (CIDR) webhooks may reach although they are private, "
        "loopback or link-local (refused otherwise, checked after DNS resolution).",
    ),
    Setting("WEBHOOK_TIMEOUT_SECONDS", "10", "How long one webhook delivery may take."),
    Setting(
        "SEAL_RENEWAL_DAYS",
        "90",
        "Long-term seals get a fresh document timestamp this many days before the last "
        "timestamp's certificate expires.",
    ),
)

DEFAULTS = {s.name: s.default for s in SETTINGS}
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "DATA_KEY", "DATABASE_URL", "SEAL_PKCS12_PATH")


def decode_data_key(value: str) -> bytes:
    """Return the 32 raw bytes of an AES-256 key given as hex or base64."""
    text = value.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")
        except ValueError as exc:
            raise ConfigError("DATA_KEY is not valid base64 or hex.") from exc
    if len(raw) != 32:
        raise ConfigError(
            f"DATA_KEY must be 32 bytes (AES-256); this one is {len(raw)} bytes. "
            'Make one with: python -c "import secrets;print(secrets.token_hex(32))"'
        )
    return raw


def _instance_secret(instance: Path, name: str, make: str) -> str:
    path = instance / name
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make + "\n")
    return make


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def load_config(instance_path: str, environ: dict[str, str] | None = None) -> dict[str, object]:
    """Read every setting; in development, create missing secrets in the instance folder."""
    env = dict(os.environ if environ is None else environ)
    values = {name: env.get(name, default) for name, default in DEFAULTS.items()}
    mode = (values["PORTAL_ENV"] or "development").strip().lower()
    if mode not in {"development", "production"}:
        raise ConfigError(f"PORTAL_ENV must be 'development' or 'production', not {mode!r}.")
    production = mode == "production"
    instance = Path(instance_path)

    if production:
        missing = [name for name in REQUIRED_IN_PRODUCTION if not env.get(name)]
        if missing:
            raise ConfigError(
                "Refusing to start in production without "
                + ", ".join(missing)
                + ". Set them in the environment (see the settings table in README.md)."
            )
    else:
        if not values["SECRET_KEY"]:
            values["SECRET_KEY"] = _instance_secret(instance, "secret_key", secrets.token_hex(32))
        if not values["DATA_KEY"]:
            values["DATA_KEY"] = _instance_secret(instance, "data_key", secrets.token_hex(32))

    database_url = str(values["DATABASE_URL"])
    if database_url.startswith("sqlite:///instance/"):
        instance.mkdir(parents=True, exist_ok=True)
        database_url = "sqlite:///" + str(
            instance / database_url.removeprefix("sqlite:///instance/")
        )
    database_url = normalise_database_url(database_url)

    data_key = decode_data_key(str(values["DATA_KEY"]))
    redis_url = str(values["REDIS_URL"] or "")
    return {
        "PORTAL_ENV": mode,
        "PRODUCTION": production,
        "SECRET_KEY": values["SECRET_KEY"],
        "DATA_KEY": data_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "MAIL_SERVER": values["MAIL_SERVER"],
        "MAIL_PORT": int(str(values["MAIL_PORT"])),
        "MAIL_USERNAME": values["MAIL_USERNAME"],
        "MAIL_PASSWORD": values["MAIL_PASSWORD"],
        "MAIL_USE_TLS": _bool(values["MAIL_USE_TLS"]),
        "MAIL_FROM": values["MAIL_FROM"],
        "PUBLIC_BASE_URL": str(values["PUBLIC_BASE_URL"]).rstrip("/"),
        "TRUSTED_PROXIES": int(str(values["TRUSTED_PROXIES"])),
        "SESSION_IDLE_MINUTES": int(str(values["SESSION_IDLE_MINUTES"])),
        "SESSION_ABSOLUTE_HOURS": int(str(values["SESSION_ABSOLUTE_HOURS"])),
        "LOGIN_RATE_LIMIT": values["LOGIN_RATE_LIMIT"],
        "LOCKOUT_THRESHOLD": int(str(values["LOCKOUT_THRESHOLD"])),
        "LOCKOUT_MINUTES": int(str(values["LOCKOUT_MINUTES"])),
        "LOCKOUT_ACCOUNT_HOURLY": int(str(values["LOCKOUT_ACCOUNT_HOURLY"])),
        "ORG_NAME": values["ORG_NAME"],
        "SEAL_PKCS12_PATH": str(values["SEAL_PKCS12_PATH"] or ""),
        "SEAL_PKCS12_PASSWORD": str(values["SEAL_PKCS12_PASSWORD"] or ""),
        "SEAL_TSA_URL": str(values["SEAL_TSA_URL"] or ""),
        "SEAL_SWEEP_MINUTES": int(str(values["SEAL_SWEEP_MINUTES"])),
        "COPY_ATTACH_MAX_MB": float(str(values["COPY_ATTACH_MAX_MB"])),
        "COPY_LINK_DAYS": int(str(values["COPY_LINK_DAYS"])),
        "SIGNER_COPY_DAYS": int(str(values["SIGNER_COPY_DAYS"])),
        "SANDBOX_CPU_SECONDS": float(str(values["SANDBOX_CPU_SECONDS"])),
        "SANDBOX_MEMORY_MB": int(str(values["SANDBOX_MEMORY_MB"])),
        "SANDBOX_WALL_SECONDS": float(str(values["SANDBOX_WALL_SECONDS"] or 0)) or None,
        "SANDBOX_CONCURRENCY": int(str(values["SANDBOX_CONCURRENCY"] or 0)) or None,
        "SANDBOX_QUEUE_SECONDS": float(str(values["SANDBOX_QUEUE_SECONDS"])),
        "BULK_MAIL_PER_MINUTE": int(str(values["BULK_MAIL_PER_MINUTE"])),
        "REPORT_MAX_ENVELOPES": max(1, int(str(values["REPORT_MAX_ENVELOPES"]))),
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        "SESSION_COOKIE_NAME": "__Host-portal" if production else "portal_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "WTF_CSRF_TIME_LIMIT": 8 * 3600,
        "MAX_CONTENT_LENGTH": 30 * 1024 * 1024,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "BABEL_DEFAULT_LOCALE": "en",
        "JOBS_INLINE": not redis_url,
        "API_RATE_LIMIT": str(values["API_RATE_LIMIT"]),
        "API_SEND_RATE_LIMIT": str(values["API_SEND_RATE_LIMIT"]),
        "API_MAX_BODY_MB": float(str(values["API_MAX_BODY_MB"])),
        "WEBHOOK_ALLOWED_HOSTS": str(values["WEBHOOK_ALLOWED_HOSTS"] or ""),
        "WEBHOOK_TIMEOUT_SECONDS": float(str(values["WEBHOOK_TIMEOUT_SECONDS"])),
        "SEAL_RENEWAL_DAYS": int(str(values["SEAL_RENEWAL_DAYS"])),
    }


def normalise_database_url(url: str) -> str:
    """Make plain ``postgresql://`` URLs use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url
