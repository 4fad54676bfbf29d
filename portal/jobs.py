"""Background jobs: asked for inside an operation, enqueued only after the commit.

With ``REDIS_URL`` set, jobs go to named RQ queues and run in ``rq worker`` processes.
Without it (embedded mode) they run inline, each in a fresh application context, right
after the transaction that asked for them commits. A rolled-back transaction asks for
nothing. The database row is always the truth; a queue is only a nudge, so a failed
enqueue is logged and left to the periodic sweepers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from portal.extensions import db

log = logging.getLogger(__name__)

QUEUES = ("default", "pdf", "mail", "webhooks")
PENDING = "portal_jobs"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class JobSpec:
    """A function that may run as a job, and where and how it runs."""

    name: str
    func: Callable[..., Any]
    queue: str
    retry_intervals: tuple[int, ...]
    timeout: int


@dataclass(frozen=True)
class PeriodicTask:
    """Work that ``flask portal tick`` and the RQ cron run every ``every`` seconds."""

    name: str
    func: Callable[[], Any]
    every: int


@dataclass
class _Request:
    spec: JobSpec
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


_JOBS: dict[str, JobSpec] = {}
_PERIODIC: dict[str, PeriodicTask] = {}
_worker_app: Flask | None = None


def job(
    queue: str = "default", retry: tuple[int, ...] = (10, 60, 300), timeout: int = 300
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a function (taking ids, idempotent) as a job on a named queue."""
    if queue not in QUEUES:
        raise ValueError(f"Unknown queue {queue!r}; use one of {QUEUES}.")

    def register(func: Callable[P, R]) -> Callable[P, R]:
        name = f"{func.__module__}:{func.__qualname__}"
        _JOBS[name] = JobSpec(name, func, queue, retry, timeout)
        return func

    return register


def periodic(every: int) -> Callable[[Callable[[], R]], Callable[[], R]]:
    """Mark a function as periodic work, run every ``every`` seconds."""

    def register(func: Callable[[], R]) -> Callable[[], R]:
        name = f"{func.__module__}:{func.__qualname__}"
        _PERIODIC[name] = PeriodicTask(name, func, every)
        return func

    return register


def periodic_tasks() -> list[PeriodicTask]:
    """Every registered periodic task, in name order."""
    return sorted(_PERIODIC.values(), key=lambda task: task.name)


def enqueue(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Ask for ``func(*args, **kwargs)`` to run once the current transaction commits."""
    name = f"{func.__module__}:{func.__qualname__}"
    if name not in _JOBS:
        raise ValueError(f"{name} is not a registered job; decorate it with @jobs.job().")
    session = db.session()
    if not session.in_transaction():
        session.begin()  # so that a rollback before any SQL still forgets the request
    session.info.setdefault(PENDING, []).append(_Request(_JOBS[name], args, kwargs))


def _lookup(name: str) -> Callable[..., Any]:
    if name not in _JOBS and name not in _PERIODIC:
        importlib.import_module(name.partition(":")[0])
    if name in _JOBS:
        return _JOBS[name].func
    return _PERIODIC[name].func


def execute(name: str, *args: Any, **kwargs: Any) -> Any:
    """Entry point RQ workers call: run a registered job inside an application context."""
    func = _lookup(name)
    app = current_app._get_current_object() if has_app_context() else _app_for_worker()  # type: ignore[attr-defined]
    with app.app_context():
        return func(*args, **kwargs)


def _app_for_worker() -> Flask:
    global _worker_app
    if _worker_app is None:
        from portal import create_app

        _worker_app = create_app()
    return _worker_app


def redis_connection(app: Flask) -> Redis | None:
    """The app's Redis connection, or None in embedded mode."""
    url = app.config.get("REDIS_URL")
    if not url:
        return None
    conn = app.extensions.get("portal_redis")
    if conn is None:
        conn = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        app.extensions["portal_redis"] = conn
    return conn


def queue(app: Flask, name: str) -> Queue:
    """A named RQ queue of the app's Redis."""
    conn = redis_connection(app)
    if conn is None:
        raise RuntimeError("No REDIS_URL: jobs run inline.")
    return Queue(name, connection=conn)


def _dispatch(app: Flask, requests: list[_Request]) -> None:
    for req in requests:
        if app.config.get("JOBS_INLINE", True):
            try:
                execute(req.spec.name, *req.args, **req.kwargs)
            except Exception:
                # The job's own rows record its failure; the sweepers retry it.
                log.exception("Inline job %s failed", req.spec.name)
            continue
        retry = Retry(max=len(req.spec.retry_intervals), interval=list(req.spec.retry_intervals))
        try:
            queue(app, req.spec.queue).enqueue(
                execute,
                req.spec.name,
                *req.args,
                retry=retry,
                job_timeout=req.spec.timeout,
                description=req.spec.name,
                **req.kwargs,
            )
        except RedisError:
            log.exception("Could not enqueue %s; the sweeper will pick it up", req.spec.name)


def _after_commit(session: Session) -> None:
    requests = session.info.pop(PENDING, None)
    if requests and has_app_context():
        _dispatch(current_app._get_current_object(), requests)  # type: ignore[attr-defined]


def _after_rollback(session: Session, previous: SessionTransaction) -> None:
    if previous.parent is None:  # the outermost transaction, not a savepoint
        session.info.pop(PENDING, None)


def install() -> None:
    """Listen to every session's commits and rollbacks (idempotent)."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_rollback)


def run_periodic() -> dict[str, str]:
    """Run every periodic task once; one failing task does not stop the others."""
    results: dict[str, str] = {}
    for task in periodic_tasks():
        try:
            outcome = execute(task.name)
            results[task.name] = "ok" if outcome is None else str(outcome)
        except Exception as exc:
            log.exception("Periodic task %s failed", task.name)
            results[task.name] = f"failed: {exc}"
    return results


def queue_health(app: Flask) -> tuple[bool, dict[str, Any]]:
    """Whether the job queues can be reached, with their lengths."""
    conn = redis_connection(app)
    if conn is None:
        return True, {"mode": "inline"}
    try:
        conn.ping()
        lengths = {name: Queue(name, connection=conn).count for name in QUEUES}
    except RedisError as exc:
        return False, {"mode": "rq", "error": type(exc).__name__}
    return True, {"mode": "rq", "queued": lengths}
