"""Admin pages for webhook endpoints, their secrets and the delivery log."""

from __future__ import annotations
