"""Per-key rate limits (``API_RATE_LIMIT``, ``API_SEND_RATE_LIMIT``) in Flask-Limiter's
storage (Redis when ``REDIS_URL`` is set) with the moving window of ``limits``, and the
``RateLimit`` / ``RateLimit-Policy`` headers of every answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from flask import Response, current_app, g
from limits import RateLimitItem, parse
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from portal.extensions import limiter
from portal.integrations.problems import ApiProblem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quota:
    """One limit's state after this call (for the RateLimit headers)."""

    name: str
    item: RateLimitItem
    remaining: int
    reset: int  # seconds until a call is free again


def _strategy() -> MovingWindowRateLimiter:
    made = current_app.extensions.get("portal_api_limiter")
    if made is None or made.storage is not limiter.storage:
        made = current_app.extensions["portal_api_limiter"] = MovingWindowRateLimiter(
            limiter.storage
        )
    return made


def count(key_id: int, name: str, setting: str) -> None:
    """Count one call of the key against the limit ``name``; 429 past it."""
    item = parse(setting)
    strategy = _strategy()
    ident = (f"portal-api-{name}", str(key_id))
    try:
        allowed = strategy.hit(item, *ident)
        stats = strategy.get_window_stats(item, *ident)
    except (RedisError, OSError):
        # Redis is down: serve the call uncounted rather than fail it (the database, not
        # Redis, holds what matters); it is logged, and the answer has no RateLimit headers
        log.warning("API rate limit %s not counted: the limiter's storage is unavailable", name)
        return
    reset = max(0, int(stats.reset_time - time.time()) + (0 if allowed else 1))
    quota = Quota(name, item, max(0, stats.remaining), reset)
    g.setdefault("api_quotas", []).append(quota)
    if not allowed:
        raise ApiProblem(
            429,
            "rate-limited",
            "Too many requests",
            f"This key may make {item.amount} such calls per {_window(item)}; "
            f"retry in {reset} seconds.",
            headers={"Retry-After": str(max(1, reset))},
        )


def _window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return f"{item.multiples} {unit}s" if item.multiples > 1 else unit


def add_headers(response: Response) -> None:
    """The RateLimit headers of the limits this request was counted against (if any)."""
    quotas: Sequence[Quota] = g.get("api_quotas") or ()
    if not quotas:
        return
    # draft-ietf-httpapi-ratelimit-headers-08 and later: structured-field lists of named policies
    response.headers["RateLimit-Policy"] = ", ".join(
        f'"{q.name}";q={q.item.amount};w={q.item.get_expiry()}' for q in quotas
    )
    response.headers["RateLimit"] = ", ".join(
        f'"{q.name}";r={q.remaining};t={q.reset}' for q in quotas
    )
