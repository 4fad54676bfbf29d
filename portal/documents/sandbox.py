"""Run work on untrusted files in a child process with CPU, memory and wall-clock limits.

Every PDF or image that comes from outside (template uploads, the public verify page, signer
attachments, page rendering, the sealing input) is parsed by libraries written for
well-behaved files: a 500-byte PDF can make them loop, allocate gigabytes or recurse without
end. ``run(func, *args)`` calls ``func`` in a child process that has

- a CPU-time limit (``RLIMIT_CPU``; the kernel stops it),
- an address-space limit of what it already maps plus the memory budget (``RLIMIT_AS``),
- no core dumps,

and the parent kills it when the wall-clock limit passes. The child's result (or the
exception it raised, such as ``PdfProblem``) comes back through a pipe. An overrun raises
``Overrun``; a machine already busy with ``SANDBOX_CONCURRENCY`` sandboxes makes the caller
wait in line for a slot (file locks under the instance folder, shared by every process of
the deployment on this machine) and raises ``Busy`` when the wait is too long. No caller holds
a database transaction while its sandbox runs (``run`` refuses when one with changes is
open, and ends a read-only one).

The child is forked: directly when the caller is single-threaded (gunicorn's sync workers,
RQ's work horses, the command line), which costs a few milliseconds; from a fork server
started on first use when the caller has threads (the development server, threaded workers),
because forking a threaded process can copy a lock that another thread holds. ``func`` must
be a module-level function and its arguments and result picklable.
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import fcntl
import functools
import gc
import importlib
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import spawn
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext, ForkServerContext
from pathlib import Path
from typing import Any, TypeVar

from flask import current_app, has_app_context

log = logging.getLogger(__name__)

R = TypeVar("R")

# What the fork server imports once, so that its children start with the PDF libraries loaded.
PRELOAD = [
    "portal.documents.inspect",
    "portal.documents.pages",
    "portal.documents.seal",
    "portal.documents.stamp",
    # (seal imports pyHanko on first use, not at import: preloaded here for its children)
    "pyhanko.pdf_utils.incremental_writer",
    "pyhanko.pdf_utils.reader",
    "pyhanko.sign.signers",
    "pyhanko.sign.validation",
    "pyhanko_certvalidator",
]
_POLL = 0.05  # seconds between looks at a child or a slot


class SandboxError(RuntimeError):
    """The work could not run to its end in the sandbox."""


class Overrun(SandboxError):
    """The child went over a limit (``kind``: ``time`` or ``memory``) or died (``crash``)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind

    def cost(self, limits: Limits) -> str:
        """What went over, for a message: "needed more than 512 MB of memory", ..."""
        if self.kind == "memory":
            return f"needed more than {limits.memory_mb} MB of memory"
        if self.kind == "time":
            return f"took longer than {limits.cpu_seconds:.0f} seconds"
        return "made the reader stop unexpectedly"


class Busy(SandboxError):
    """Every sandbox slot stayed taken for longer than the caller may wait."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed call may use."""

    cpu_seconds: float = 20.0
    memory_mb: int = 1024
    wall_seconds: float = 30.0
    queue_seconds: float = 30.0
    slots: int = max(1, os.cpu_count() or 1)
    slot_dir: str = ""

    def tighter(self, cpu_seconds: float | None = None, memory_mb: int | None = None) -> Limits:
        """These limits, lowered (never raised) for a particular use."""
        cpu = min(self.cpu_seconds, cpu_seconds) if cpu_seconds else self.cpu_seconds
        memory = min(self.memory_mb, memory_mb) if memory_mb else self.memory_mb
        wall = min(self.wall_seconds, cpu * 1.5 + 5)
        return Limits(cpu, memory, wall, self.queue_seconds, self.slots, self.slot_dir)


def configured() -> Limits:
    """The limits from the app's settings (``SANDBOX_*``), or the defaults outside an app."""
    if not has_app_context():
        return Limits()
    cfg = current_app.config
    cpu = float(cfg.get("SANDBOX_CPU_SECONDS", 20))
    return Limits(
        cpu_seconds=cpu,
        memory_mb=int(cfg.get("SANDBOX_MEMORY_MB", 1024)),
        wall_seconds=float(cfg.get("SANDBOX_WALL_SECONDS") or cpu * 1.5 + 5),
        queue_seconds=float(cfg.get("SANDBOX_QUEUE_SECONDS", 30)),
        slots=int(cfg.get("SANDBOX_CONCURRENCY") or max(1, os.cpu_count() or 1)),
        slot_dir=os.path.join(current_app.instance_path, "sandbox-slots"),
    )


class Later:
    """An argument the caller computes while the child already runs (``run(..., x=Later(f))``):
    the child gets a function that waits for the value, so it can do its first part of the
    work meanwhile. The value is computed in the caller, so it must not come from outside."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute


class _Awaited:
    """In the child: the value of a ``Later`` argument, received from the caller on first use."""

    def __init__(self, conn: Connection, name: str, values: dict[str, Any]) -> None:
        self.conn = conn
        self.name = name
        self.values = values  # shared by the arguments of one call: one message for all

    def __call__(self) -> Any:
        if not self.values:
            self.values.update(self.conn.recv())
        return self.values[self.name]


# ---------------------------------------------------------------- slots


@contextlib.contextmanager
def _slot(limits: Limits) -> Iterator[None]:
    """Hold one of ``limits.slots`` machine-wide slots (an exclusive lock on a slot file)."""
    folder = Path(limits.slot_dir or "/tmp/portal-sandbox-slots")  # noqa: S108 - lock files only
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + limits.queue_seconds
    while True:
        for number in range(limits.slots):
            fd = os.open(folder / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                continue
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if time.monotonic() >= deadline:
            raise Busy(
                f"all {limits.slots} sandbox slots stayed busy for {limits.queue_seconds:.0f} s"
            )
        time.sleep(_POLL)


# ---------------------------------------------------------------- the child


def _mapped_bytes() -> int:
    """The address space this process maps now (VmSize)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _confine(limits: Limits) -> None:
    # The parent's objects are shared copy-on-write: a garbage collection walking them would
    # copy the whole heap into this process. Only the child's own objects are collected.
    gc.freeze()
    faulthandler.disable()  # a crash here is reported by the parent, not dumped on stderr
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGALRM):
        signal.signal(number, signal.SIG_DFL)
    cpu = max(1, int(limits.cpu_seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    budget = _mapped_bytes() + limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _LogKeeper(logging.Handler):
    """Keeps the child's warnings, to be logged again by the parent (its handlers are the
    server's)."""

    LIMIT = 20

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) >= self.LIMIT:
            return
        if record.exc_info:  # tracebacks cannot be pickled: keep (the end of) their text
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = text if len(text) <= 4000 else "...\n" + text[-4000:]
            record.exc_info = None
        record.msg, record.args = record.getMessage(), None
        self.records.append(record)


def _child(conn: Connection, limits: Limits, call: Callable[[], Any]) -> None:
    """The sandboxed process: confine itself, run, and send back (status, value, warnings)
    with status "ok", "raised" or "memory"."""
    keeper = _LogKeeper()
    root = logging.getLogger()
    root.handlers = [keeper]  # the parent's handlers (files, test capture) are not ours
    root.setLevel(logging.WARNING)
    try:
        _confine(limits)
        try:
            outcome: tuple[str, Any] = ("ok", call())
        except MemoryError:
            outcome = ("memory", None)
        except RecursionError:
            outcome = ("raised", ValueError("the file is nested too deeply to read"))
        except Exception as exc:  # handed to the caller, who decides what it means
            outcome = ("raised", exc)
        try:
            conn.send((*outcome, keeper.records))
        except MemoryError:
            conn.send(("memory", None, []))
        except Exception as exc:  # an exception or result that cannot be pickled
            conn.send(("raised", SandboxError(f"result could not be returned: {exc!r}"), []))
    finally:
        conn.close()
        # Straight out: nothing of the parent's (finalizers, buffered files) runs here, and
        # a large process ends sooner.
        os._exit(0)


# ---------------------------------------------------------------- the parent

_server_lock = threading.Lock()
_preloaded = False


_NAME = "portal-sandbox"


def _threads() -> int:
    """How many threads this process runs (one: forking it is safe)."""
    return threading.active_count()


def _without_main(get_preparation_data: Callable[[str], dict[str, Any]]) -> Any:
    """multiprocessing prepares a fork server's child by importing the parent's main script
    (as ``__mp_main__``): a script without an ``if __name__ == "__main__"`` guard would run
    again inside the sandbox. Sandboxed functions live in importable modules and need no main,
    so the sandbox's children skip that step."""

    def prepare(name: str) -> dict[str, Any]:
        data = get_preparation_data(name)
        if name == _NAME:
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    return prepare


@functools.cache
def _preload_here() -> None:
    """The fork server's preloads, in this process before its first direct fork (the PDF
    libraries are imported on first use, so a process that never sandboxes never loads them;
    without this each forked child would import them again)."""
    for name in PRELOAD:
        importlib.import_module(name)


def _context() -> ForkContext | ForkServerContext:
    """Fork directly when this process has one thread; else use the fork server."""
    global _preloaded
    if _threads() == 1:
        _preload_here()
        return ForkContext()
    context = ForkServerContext()
    with _server_lock:
        if not _preloaded:
            spawn.get_preparation_data = _without_main(spawn.get_preparation_data)
            context.set_forkserver_preload(PRELOAD)
            _preloaded = True
    return context


def _end_read_transaction() -> None:
    """No database transaction may be held open while a sandbox runs (it can take seconds)."""
    if not has_app_context():
        return
    from portal.extensions import db

    session = db.session()
    if not session.in_transaction():
        return
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("commit before sandboxed work: a transaction with changes is open")
    session.rollback()


def run(func: Callable[..., R], *args: Any, limits: Limits | None = None, **kwargs: Any) -> R:
    """``func(*args, **kwargs)`` in a confined child process; its exceptions are raised here.

    A keyword argument given as ``Later(compute)`` is computed here after the child has
    started, and reaches ``func`` as a function that returns it (waiting for it if need be).
    """
    limits = limits or configured()
    _end_read_transaction()
    later = {name: value for name, value in kwargs.items() if isinstance(value, Later)}
    plain = {name: value for name, value in kwargs.items() if name not in later}
    with _slot(limits):
        return _run_in_child(func, args, plain, later, limits)


def _run_in_child(
    func: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    later: dict[str, Later],
    limits: Limits,
) -> R:
    context = _context()
    receive, send = context.Pipe(duplex=False)
    feed_out, feed_in = context.Pipe(duplex=False) if later else (None, None)
    if feed_out is not None:
        shared: dict[str, Any] = {}
        kwargs = {**kwargs, **{name: _Awaited(feed_out, name, shared) for name in later}}
    call = functools.partial(func, *args, **kwargs)
    process = context.Process(target=_child, args=(send, limits, call), name=_NAME, daemon=True)
    process.start()  # (the first start of a fork server loads the libraries: not counted)
    started = time.monotonic()
    send.close()
    message: tuple[str, Any, list[logging.LogRecord]] | None = None
    try:
        if feed_in is not None and feed_out is not None:
            feed_out.close()
            try:
                values = {name: value.compute() for name, value in later.items()}
                with contextlib.suppress(OSError):  # a child that already died reads nothing
                    feed_in.send(values)
            finally:
                feed_in.close()
        deadline = started + limits.wall_seconds
        while message is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Overrun("time", f"still running after {limits.wall_seconds:.0f} s")
            if receive.poll(min(_POLL, left)):
                try:
                    message = receive.recv()
                except EOFError:
                    break  # it died without an answer
            elif not process.is_alive() and not receive.poll(0):
                break
    finally:
        receive.close()
        if message is None and process.is_alive():
            process.kill()
        # A child that answered is on its way out: don't wait for it (multiprocessing reaps
        # it when the next one starts); one that did not is reaped now, to learn why.
        process.join(0 if message is not None else 5)
    if message is None:
        raise _death(process.exitcode, time.monotonic() - started)
    status, value, records = message
    for record in records:
        logging.getLogger(record.name).handle(record)
    if status == "ok":
        return value
    if status == "memory":
        raise Overrun("memory", f"needed more than {limits.memory_mb} MB")
    raise value


def _death(exitcode: int | None, seconds: float) -> Overrun:
    """Why a child stopped without answering, from how it ended."""
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return Overrun("time", f"used up its CPU time ({seconds:.1f} s)")
    if exitcode in (-signal.SIGABRT, -signal.SIGBUS):
        return Overrun("memory", "ran out of memory")
    log.warning("sandboxed work ended without an answer (exit code %s)", exitcode)
    return Overrun("crash", f"stopped unexpectedly (exit code {exitcode})")
