"""Failed sign-ins, counted per account and source together (OWASP ASVS 2.2.1).

``LOCKOUT_THRESHOLD`` failed passwords or codes on one account from one source (an IP
address; an IPv6 address counts as its /64 network, which one subscriber usually holds)
lock that source out of that account for ``LOCKOUT_MINUTES``. Someone guessing from one
place therefore cannot keep the real user, elsewhere, out of their account.

An attacker with many addresses is held by a ceiling on the account as a whole: after
``LOCKOUT_ACCOUNT_HOURLY`` failures within an hour (counted in a moving window in the rate
limiter's storage), only the sources the user signed in from in the last
``KNOWN_SOURCE_DAYS`` may try for the next hour. Either lock shows on the admin's page of
the user and ends early with *Unlock*; every lock is an ``auth.account.locked`` event with
its source.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from flask import current_app
from limits import RateLimitItem, parse
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import delete, or_, select

from portal import audit, clock, jobs
from portal.accounts.models import SigninThrottle, User
from portal.extensions import db, limiter, write_lock

KNOWN_SOURCE_DAYS = 30
ACCOUNT_LOCK = timedelta(hours=1)
_WINDOW_KEY = "portal-signin-failures"


def source() -> str:
    """Where the current request comes from, as failures are counted: its IP address, or
    the /64 network of an IPv6 address."""
    address = audit.request_origin()[0] or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _row(user: User, where: str) -> SigninThrottle | None:
    return db.session.execute(
        select(SigninThrottle).where(
            SigninThrottle.user_id == user.id, SigninThrottle.source == where
        )
    ).scalar_one_or_none()


def _known(row: SigninThrottle | None) -> bool:
    """Whether the user signed in from this source recently."""
    if row is None or row.last_success_at is None:
        return False
    return clock.utcnow() - clock.as_utc(row.last_success_at) < timedelta(days=KNOWN_SOURCE_DAYS)


def _refused(user: User, row: SigninThrottle | None) -> bool:
    if row is not None and row.is_locked():
        return True
    return user.is_locked() and not _known(row)


def refused(user: User, where: str) -> bool:
    """Whether attempts on the account from this source are refused at the moment."""
    return _refused(user, _row(user, where))


def _account_window() -> tuple[MovingWindowRateLimiter, RateLimitItem]:
    hourly = int(current_app.config["LOCKOUT_ACCOUNT_HOURLY"])
    return MovingWindowRateLimiter(limiter.storage), parse(f"{hourly} per hour")


def failed(user: User, where: str, event: str, reason: str) -> bool:
    """Count a failed password or code from a source, in the caller's transaction; record
    ``event`` and any lock it causes. Returns whether the source is now refused."""
    cfg = current_app.config
    now = clock.utcnow()
    # Serialise the failures of one account: the source's row is read, then changed.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    row = _row(user, where)
    if row is None:
        row = SigninThrottle(user_id=user.id, source=where, failures=0)
        db.session.add(row)
    row.failures = (row.failures or 0) + 1
    row.last_failure_at = now
    audit.record(
        event,
        actor=user,
        subject=user,
        data={"reason": reason, "attempt": row.failures, "source": where},
    )
    if row.failures >= int(cfg["LOCKOUT_THRESHOLD"]):
        minutes = int(cfg["LOCKOUT_MINUTES"])
        row.locked_until = now + timedelta(minutes=minutes)
        audit.record(
            "auth.account.locked",
            actor=user,
            subject=user,
            data={"source": where, "failed_attempts": row.failures, "minutes": minutes},
        )
        row.failures = 0
    strategy, hourly = _account_window()
    strategy.hit(hourly, _WINDOW_KEY, str(user.id))
    if not user.is_locked() and not strategy.test(hourly, _WINDOW_KEY, str(user.id)):
        user.locked_until = now + ACCOUNT_LOCK
        audit.record(
            "auth.account.locked",
            actor=user,
            subject=user,
            data={
                "source": where,
                "scope": "new sources",
                "failed_attempts": hourly.amount,
                "minutes": int(ACCOUNT_LOCK.total_seconds() // 60),
            },
        )
    return _refused(user, row)


def succeeded(user: User, where: str) -> None:
    """A complete sign-in from this source (in the caller's transaction): its count starts
    again, and it counts as a place the user signs in from."""
    row = _row(user, where)
    if row is None:
        row = SigninThrottle(user_id=user.id, source=where)
        db.session.add(row)
    row.failures = 0
    row.last_success_at = clock.utcnow()


def locks(user: User) -> list[SigninThrottle]:
    """The sources locked out of the account now, soonest to end first."""
    rows = db.session.execute(
        select(SigninThrottle)
        .where(SigninThrottle.user_id == user.id, SigninThrottle.locked_until > clock.utcnow())
        .order_by(SigninThrottle.locked_until)
    ).scalars()
    return list(rows)


def locked_user_ids() -> set[int]:
    """Users with a locked source or a locked account, for lists."""
    now = clock.utcnow()
    by_source = select(SigninThrottle.user_id).where(SigninThrottle.locked_until > now)
    by_account = select(User.id).where(User.locked_until > now)
    return set(db.session.execute(by_source.union(by_account)).scalars())


def is_locked(user: User) -> bool:
    """Whether any lock holds on the account (for the admin's pages)."""
    return user.is_locked() or bool(locks(user))


def unlock(user: User) -> None:
    """End every lock on the account and forget its recent failures (caller's transaction)."""
    user.locked_until = None
    for row in db.session.execute(
        select(SigninThrottle).where(SigninThrottle.user_id == user.id)
    ).scalars():
        row.locked_until = None
        row.failures = 0
    strategy, hourly = _account_window()
    strategy.clear(hourly, _WINDOW_KEY, str(user.id))


@jobs.periodic(every=3600)
def forget_stale_sources() -> str:
    """Forget sources with no lock and nothing for ``KNOWN_SOURCE_DAYS`` (their counts too)."""
    now = clock.utcnow()
    cutoff = now - timedelta(days=KNOWN_SOURCE_DAYS)
    write_lock()
    result = db.session.execute(
        delete(SigninThrottle).where(
            or_(SigninThrottle.locked_until.is_(None), SigninThrottle.locked_until <= now),
            or_(SigninThrottle.last_failure_at.is_(None), SigninThrottle.last_failure_at < cutoff),
            or_(SigninThrottle.last_success_at.is_(None), SigninThrottle.last_success_at < cutoff),
        )
    )
    db.session.commit()
    return f"{result.rowcount} sign-in sources forgotten"  # type: ignore[attr-defined]
