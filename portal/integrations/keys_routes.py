"""Admin pages for API keys (create, shown once, revoke, last use)."""

from __future__ import annotations
