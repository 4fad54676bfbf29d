"""A period of whole UTC days, chosen with a quick pick or typed dates (records pages).

``Period.parse`` reads ``period`` (``today``, ``last_7_days``, ``this_month``, ``last_month``,
``custom``) and ``from`` and ``to`` (``YYYY-MM-DD``, both days included; typed dates mean
``custom`` whatever the pick).
Anything else (nonsense dates, a range the wrong way round, a megabyte of text) gives a
message for the person and the default period, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from portal import clock

QUICK_PICKS = {
    "today": "Today",
    "last_7_days": "Last 7 days",
    "this_month": "This month",
    "last_month": "Last month",
    "custom": "Custom dates",
}
DEFAULT_PICK = "last_7_days"
MAX_DAYS = 366 * 20  # a wider range is surely a typing mistake
_DATE_LENGTH = 10  # YYYY-MM-DD


def _month_start(day: date) -> date:
    return day.replace(day=1)


@dataclass(frozen=True)
class Period:
    """Whole UTC days ``first`` .. ``last`` (both included)."""

    pick: str
    first: date
    last: date
    errors: list[str] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        """The first moment of the period (UTC)."""
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the period (UTC)."""
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def label(self) -> str:
        if self.first == self.last:
            return f"{self.first:%Y-%m-%d} (UTC)"
        return f"{self.first:%Y-%m-%d} to {self.last:%Y-%m-%d} (UTC)"

    def params(self) -> dict[str, str]:
        """The query string that chooses this period again."""
        if self.pick == "custom":
            return {
                "period": "custom",
                "from": f"{self.first:%Y-%m-%d}",
                "to": f"{self.last:%Y-%m-%d}",
            }
        return {"period": self.pick}

    @classmethod
    def of(cls, pick: str, today: date | None = None) -> Period:
        """A quick pick's days, as of ``today`` (UTC)."""
        today = today or clock.utcnow().date()
        if pick == "today":
            return cls(pick, today, today)
        if pick == "this_month":
            return cls(pick, _month_start(today), today)
        if pick == "last_month":
            last = _month_start(today) - timedelta(days=1)
            return cls(pick, _month_start(last), last)
        return cls("last_7_days", today - timedelta(days=6), today)

    @classmethod
    def parse(cls, args: Mapping[str, str], default: str = DEFAULT_PICK) -> Period:
        """The period a form asked for; ``errors`` says what was wrong with it, if anything."""
        pick = str(args.get("period") or "") or default
        if args.get("from") or args.get("to"):
            pick = "custom"  # dates typed: they are what the person means
        if pick not in QUICK_PICKS:
            return cls._refused(default, "Choose a period from the list.")
        if pick != "custom":
            return cls.of(pick)
        first = _day(str(args.get("from") or ""))
        last = _day(str(args.get("to") or ""))
        errors = []
        if first is None:
            errors.append("The start date is not a date: use YYYY-MM-DD, for example 2026-01-31.")
        if last is None:
            errors.append("The end date is not a date: use YYYY-MM-DD, for example 2026-01-31.")
        if first is not None and last is not None:
            if last < first:
                errors.append("The end date is before the start date: swap them.")
            elif (last - first).days > MAX_DAYS:
                errors.append("That period is longer than 20 years: choose a shorter one.")
        if errors:
            return cls._refused(default, *errors)
        assert first is not None and last is not None
        return cls("custom", first, last)

    @classmethod
    def _refused(cls, default: str, *errors: str) -> Period:
        period = cls.of(default)
        return cls(period.pick, period.first, period.last, list(errors))


def _day(value: str) -> date | None:
    value = value.strip()
    if len(value) != _DATE_LENGTH or not value.isascii():
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if 1970 <= day.year < 9999 else None
