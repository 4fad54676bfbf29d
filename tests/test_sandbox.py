"""The sandbox for untrusted files: limits on CPU, memory and time, a bounded number at once,
exceptions carried back, no transaction held, both ways of starting the child."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portal.documents import sandbox
from portal.documents.inspect import PdfProblem

FAST = sandbox.Limits(cpu_seconds=1, memory_mb=256, wall_seconds=3, queue_seconds=1, slots=2)


# Run in the child: module-level so that the fork server's children can import them.
def add(a: int, b: int, *, times: int = 1) -> int:
    return (a + b) * times


def spin() -> None:
    while True:
        pass


def hog() -> bytes:
    chunks = []
    while True:
        chunks.append(b"x" * (16 * 1024 * 1024))


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def refuse() -> None:
    raise PdfProblem("This PDF is damaged and cannot be read.")


def die() -> None:
    os.abort()


def recurse(n: int = 0) -> int:
    return recurse(n + 1)


def my_pid() -> int:
    return os.getpid()


def join_later(head: str, *, tail: Callable[[], str]) -> str:
    return head + tail()


def ignore_later(*, tail: Callable[[], str]) -> str:
    return "did not need it"


@pytest.fixture(params=["fork", "forkserver"])
def mode(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[sandbox.Limits]:
    """Each test runs once as a single-threaded caller would (plain fork) and once as a
    threaded one (the fork server). The suite's own helper threads (the SMTP server, live
    servers) are not counted for the first: the work forked here takes none of their locks."""
    seen: list[str] = []
    real = sandbox._context

    def chosen() -> object:
        context = real()
        seen.append(type(context).__name__)
        return context

    monkeypatch.setattr(sandbox, "_threads", lambda: 1 if request.param == "fork" else 2)
    monkeypatch.setattr(sandbox, "_context", chosen)
    yield sandbox.Limits(**{**FAST.__dict__, "slot_dir": str(tmp_path / "slots")})
    expected = "ForkContext" if request.param == "fork" else "ForkServerContext"
    assert seen and set(seen) == {expected}


def test_result_and_keyword_arguments_come_back(mode: sandbox.Limits) -> None:
    assert sandbox.run(add, 2, 3, times=4, limits=mode) == 20


def test_it_runs_in_another_process(mode: sandbox.Limits) -> None:
    assert sandbox.run(my_pid, limits=mode) != os.getpid()


def test_a_later_argument_is_computed_by_the_caller_while_the_child_runs(
    mode: sandbox.Limits,
) -> None:
    computed_in: list[int] = []

    def tail() -> str:
        computed_in.append(os.getpid())
        return " and the rest"

    assert sandbox.run(join_later, "the start", tail=sandbox.Later(tail), limits=mode) == (
        "the start and the rest"
    )
    assert computed_in == [os.getpid()]
    assert sandbox.run(ignore_later, tail=sandbox.Later(tail), limits=mode) == "did not need it"


def test_a_later_argument_that_fails_stops_the_child(mode: sandbox.Limits) -> None:
    def broken() -> str:
        raise LookupError("no certificate")

    started = time.monotonic()
    with pytest.raises(LookupError, match="no certificate"):
        sandbox.run(join_later, "x", tail=sandbox.Later(broken), limits=mode)
    assert time.monotonic() - started < mode.wall_seconds


def test_an_exception_of_the_work_is_raised_in_the_caller(mode: sandbox.Limits) -> None:
    with pytest.raises(PdfProblem, match="damaged"):
        sandbox.run(refuse, limits=mode)


def test_endless_cpu_work_is_stopped(mode: sandbox.Limits) -> None:
    started = time.monotonic()
    with pytest.raises(sandbox.Overrun) as caught:
        sandbox.run(spin, limits=mode)
    assert caught.value.kind == "time"
    assert time.monotonic() - started < mode.wall_seconds + 2


def test_endless_memory_is_stopped(mode: sandbox.Limits) -> None:
    with pytest.raises(sandbox.Overrun) as caught:
        sandbox.run(hog, limits=mode)
    assert caught.value.kind == "memory"


def test_wall_clock_stops_work_that_waits(mode: sandbox.Limits) -> None:
    started = time.monotonic()
    with pytest.raises(sandbox.Overrun, match="still running"):
        sandbox.run(sleep, 60, limits=mode)
    assert time.monotonic() - started < mode.wall_seconds + 2


def test_a_crash_is_an_overrun_not_a_hang(mode: sandbox.Limits) -> None:
    with pytest.raises(sandbox.Overrun):
        sandbox.run(die, limits=mode)


def test_runaway_recursion_is_a_plain_error(mode: sandbox.Limits) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        sandbox.run(recurse, limits=mode)


def test_a_busy_machine_makes_callers_wait_then_refuses(tmp_path: Path) -> None:
    limits = sandbox.Limits(
        cpu_seconds=5, memory_mb=256, wall_seconds=5, queue_seconds=0.5, slots=1,
        slot_dir=str(tmp_path),
    )  # fmt: skip
    holder = threading.Thread(target=sandbox.run, args=(sleep, 1.5), kwargs={"limits": limits})
    holder.start()
    time.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(sandbox.Busy):
        sandbox.run(add, 1, 1, limits=limits)
    assert 0.4 < time.monotonic() - started < 2
    holder.join()
    # The slot is free again: the next caller gets it.
    assert sandbox.run(add, 1, 1, limits=limits) == 2


def test_callers_queue_for_a_slot_instead_of_failing(tmp_path: Path) -> None:
    limits = sandbox.Limits(
        cpu_seconds=5, memory_mb=256, wall_seconds=5, queue_seconds=10, slots=1,
        slot_dir=str(tmp_path),
    )  # fmt: skip
    results: list[int] = []
    workers = [
        threading.Thread(target=lambda: results.append(sandbox.run(add, 1, 1, limits=limits)))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert results == [2, 2, 2, 2]


def test_no_transaction_with_changes_may_be_held_while_it_runs(ctx) -> None:
    from portal.accounts.models import Team
    from portal.extensions import db

    db.session.add(Team(name="Pending"))
    with pytest.raises(RuntimeError, match="commit before sandboxed work"):
        sandbox.run(add, 1, 2)
    db.session.rollback()


def test_a_read_only_transaction_is_ended_first(ctx) -> None:
    from sqlalchemy import text

    from portal.extensions import db

    db.session.execute(text("SELECT 1"))
    assert db.session().in_transaction()
    assert sandbox.run(add, 1, 2) == 3
    assert not db.session().in_transaction()


def test_limits_come_from_the_settings(make_app) -> None:
    app = make_app(
        SANDBOX_CPU_SECONDS=7, SANDBOX_MEMORY_MB=300, SANDBOX_CONCURRENCY=3,
        SANDBOX_QUEUE_SECONDS=4,
    )  # fmt: skip
    with app.app_context():
        limits = sandbox.configured()
    assert (limits.cpu_seconds, limits.memory_mb, limits.slots, limits.queue_seconds) == (
        7, 300, 3, 4,
    )  # fmt: skip
    assert limits.wall_seconds == 7 * 1.5 + 5
    assert limits.slot_dir.startswith(app.instance_path)
    tight = limits.tighter(cpu_seconds=2, memory_mb=1000)
    assert (tight.cpu_seconds, tight.memory_mb) == (2, 300)
