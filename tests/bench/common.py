"""What several benchmarks share: the test settings and a temporary environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def base_config(uri: str, **extra: object) -> dict[str, object]:
    """The settings ``tests.conftest.base_config`` uses (copied: conftest needs pytest)."""
    config: dict[str, object] = {
        "TESTING": True,
        "SECRET_KEY": "bench-secret-key",
        "DATA_KEY": bytes(range(32)),
        "SQLALCHEMY_DATABASE_URI": uri,
        "ARGON2_PARAMS": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
        "REDIS_URL": "",
        "JOBS_INLINE": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "SERVER_NAME": None,
    }
    config.update(extra)
    return config


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
