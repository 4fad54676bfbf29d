"""Routes of the records centre (see portal/records/__init__.py): legal holds."""

from __future__ import annotations

from portal.records import (  # noqa: F401
    bp,
    holds,
    officers_only,
)
