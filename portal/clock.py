"""The portal's one source of the current time, so tests can move it.

Operators can move it too, for one command: ``flask portal tick --now 2033-12-05T00:00:00Z``
(or ``PORTAL_NOW``) runs the periodic work as if it were then, for trying retention on a
development or staging copy (refused in production). The clock keeps ticking from there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


class ClockError(ValueError):
    """A moment that cannot be read."""


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC) + _offset


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes (as SQLite returns them) as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_moment(value: str) -> datetime:
    """An ISO 8601 moment (``2033-12-05``, ``2033-12-05T00:00:00Z``; UTC when no zone)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ClockError(
            f"{value[:40]!r} is not a date and time; write it like 2033-12-05T00:00:00Z."
        ) from exc
    return as_utc(moment)


def travel_to(moment: datetime) -> None:
    """Move this process's clock so that it reads ``moment`` now (and keeps ticking)."""
    global _offset
    _offset = as_utc(moment) - datetime.now(UTC)


def reset() -> None:
    """Back to the real time."""
    global _offset
    _offset = timedelta(0)
