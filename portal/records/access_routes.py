"""Routes of the records centre (see portal/records/__init__.py)."""

from __future__ import annotations

from portal.records import bp, officers_only  # noqa: F401
