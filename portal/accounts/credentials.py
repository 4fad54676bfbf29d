"""Password hashing (argon2id), TOTP (RFC 6238) and recovery codes: the primitives.

Nothing here touches the database; ``signin`` and ``admin`` use these.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
import segno
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

TOTP_STEP = 30
TOTP_SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
MIN_PASSWORD_LENGTH = 12


def _hasher() -> PasswordHasher:
    params = current_app.config.get("ARGON2_PARAMS") or {}
    return PasswordHasher(type=Type.ID, **params)


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher().hash(password)


def check_password(stored_hash: str | None, password: str) -> bool:
    """Whether the password matches; spends the same effort when there is no hash."""
    hasher = _hasher()
    try:
        return hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _dummy_hash() -> str:
    # Verifying against a real hash keeps "unknown email" as slow as "wrong password".
    cached = current_app.extensions.get("portal_dummy_hash")
    if cached is None:
        cached = _hasher().hash(secrets.token_hex(16))
        current_app.extensions["portal_dummy_hash"] = cached
    return str(cached)


def generate_password() -> str:
    """A one-time password for a new account: 4 groups of 4, easy to read aloud."""
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def new_totp_secret() -> str:
    """A fresh base32 TOTP secret of 160 bits."""
    return pyotp.random_base32(length=32)


def totp_step(when: datetime) -> int:
    """The RFC 6238 time step a moment falls in."""
    return int(when.timestamp()) // TOTP_STEP


def match_totp(secret: str, code: str, when: datetime) -> int | None:
    """The time step (now, one before or one after) the code belongs to, or None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_STEP)
    now_step = totp_step(when)
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.at(step * TOTP_STEP), code):
            return step
    return None


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret, interval=TOTP_STEP).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """An inline SVG QR code of the URI (no scripts, no external requests)."""
    return str(
        segno.make(uri, error="m").svg_inline(
            scale=5, border=4, dark="#111", light="#fff", omitsize=True
        )
    )


def format_secret(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def new_recovery_codes() -> list[str]:
    """Ten fresh recovery codes like ``k7pq-3mzt-x9ad`` (about 70 bits each)."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(12))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 12, 4)))
    return codes


def normalise_recovery_code(code: str) -> str:
    """Lower-case, without spaces or dashes, so people may type it either way."""
    return "".join(ch for ch in code.lower() if ch.isalnum())


def looks_like_recovery_code(code: str) -> bool:
    """Recovery codes are 12 letters and digits; TOTP codes are 6 digits."""
    return len(normalise_recovery_code(code)) == 12


def hash_recovery_code(code: str) -> str:
    """SHA-256 of the normalised code (the codes carry enough entropy for a plain hash)."""
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def password_problem(password: str, email: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if password.lower() == email.lower() or password.lower() in email.lower():
        return "Do not use your email address as a password."
    if len(set(password)) < 5:
        return "Use a password with more variety than that."
    return None
