"""What several benchmarks share: the test settings and a temporary environment."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any


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


def server_env(secret_key: str) -> dict[str, str]:
    """The environment of a benchmark's own portal server (gunicorn): development settings,
    no Redis or mail, a login limit no run reaches."""
    return {
        "PORTAL_ENV": "development",
        "SECRET_KEY": secret_key,
        "DATA_KEY": bytes(range(32)).hex(),
        "LOGIN_RATE_LIMIT": "100000 per minute",
        "REDIS_URL": "",
        "MAIL_SERVER": "",
    }


REFUND_VALUES = {  # the demo refund's merge values (tests.test_envelopes takes them from here)
    "customer.name": "Zoë Łukasiewicz",
    "customer.email": "zoe@example.com",
    "order.number": "ORD-77",
    "order.date": "3 June 2026",
    "refund.amount": "€42.00",
    "refund.method": "card",
    "refund.reason": "Damaged in transit.",
}


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


@contextlib.contextmanager
def bench_folder() -> Iterator[str]:
    """A temporary folder whose ``instance`` folder the portal uses, with the environment's
    database, Redis, mail and production settings cleared; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as folder:
        instance = os.path.join(folder, "instance")
        os.makedirs(instance)
        os.environ["PORTAL_INSTANCE"] = instance
        for name in ("DATABASE_URL", "REDIS_URL", "PORTAL_ENV", "MAIL_SERVER"):
            os.environ.pop(name, None)
        yield folder


def start_postgres(name: str) -> Any | None:
    """A throwaway PostgreSQL server, or None after a line saying the benchmark skips it."""
    from tests.services import PostgresServer

    try:
        return PostgresServer.start()
    except Exception as exc:  # no server binaries, not allowed to run one, ...
        print(f"{name}[postgresql]: skipped, no PostgreSQL server ({exc})", flush=True)
        return None
