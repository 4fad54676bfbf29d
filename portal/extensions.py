"""Extension objects, created here and bound to the app in ``create_app``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, g, has_app_context, request
from flask_babel import Babel
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, SessionTransaction

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can rely on."""

    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = HTMX()
babel = Babel()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def skip_idle_rate_limit_check(app: Flask) -> None:
    """Drop Flask-Limiter's before-request check while there is nothing for it to check.

    That check applies default, application and blueprint-wide limits; a limit declared on a
    view (``@limiter.limit``) is checked by its decorator when the view runs, with or without
    it. The portal declares only the latter, so the check found nothing, on every request.
    Call this once every blueprint is registered: declare a default, application or
    blueprint-wide limit and the check stays.
    """
    manager = limiter.limit_manager
    wide = (
        manager.default_limits
        or manager.application_limits
        or any(manager.blueprint_limits(app, name) for name in app.blueprints)
    )
    if not wide:
        app.before_request_funcs[None].remove(limiter._check_request_limit)


def csrf_check_by_method_first(app: Flask) -> None:
    """Flask-WTF's before-request check looks up the endpoint's exemptions before it looks at
    the method, which lets every GET, HEAD and OPTIONS request go: look at the method first.
    (What the check does for the methods it protects is unchanged.)"""
    hooks = app.before_request_funcs[None]
    for n, hook in enumerate(hooks):
        if getattr(hook, "__name__", None) == "csrf_protect":
            hooks[n] = _protected_methods_only(hook)


def _protected_methods_only(check: Callable[[], Any]) -> Callable[[], Any]:
    @wraps(check)
    def csrf_protect() -> Any:
        if request.method in current_app.config["WTF_CSRF_METHODS"]:
            return check()
        return None

    return csrf_protect


PING_AFTER_IDLE = 10.0  # seconds a pooled connection may sit unused before it is tested
_RETURNED = "portal_returned_at"  # on the pool entry: when the connection was last handed back


def ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection before use only when it sat unused for a while.

    SQLAlchemy's ``pool_pre_ping`` tests every checkout: a database round trip per request.
    A connection handed back moments ago is alive; one that sat idle (a database restart, an
    idle timeout) is tested, and replaced if it is dead.
    """
    dialect = engine.dialect

    def seen(_dbapi_connection: Any, record: Any, *_args: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    def test(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED)
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever the driver raises for a dead connection
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("the connection did not answer")

    event.listen(engine, "connect", seen)  # a new connection is alive
    event.listen(engine, "checkin", seen)
    event.listen(engine, "checkout", test)  # DisconnectionError: the pool connects afresh


# Reading and locking. On SQLite a transaction that begins with BEGIN IMMEDIATE takes the
# database-wide write lock up front: writers queue instead of failing half-way, and
# read-then-write work (the audit chain's append, a state change checked first) cannot
# interleave. Only work that writes may hold that lock, so a request that reads
# (``reads_first()``: every GET, HEAD and OPTIONS request, and views marked ``read_only``)
# begins deferred transactions instead: its readers neither wait for writers nor make them
# wait. On PostgreSQL it reads in autocommit mode, where each statement sees committed data as
# it would in a READ COMMITTED transaction, without the BEGIN and ROLLBACK round trips. Before
# such a request changes anything it calls ``write_lock()``: the read-only transaction, which
# has written nothing, ends (every loaded object expires) and the next transaction is an
# ordinary writing one, so what it reads again and then changes is read under the lock; once
# that transaction ends the request reads without locking again. Guards: a SELECT ... FOR
# UPDATE in a read-only transaction calls ``write_lock()`` itself when nothing is pending, and
# a change in a read-only transaction is refused with an error: on PostgreSQL it would not be
# atomic, and on SQLite it would take the write lock in the middle of a read, which fails
# (SQLITE_BUSY) when another writer committed since the read began. Jobs and CLI commands
# write: their transactions take the lock from the start unless they call ``reads_first()``.
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_READ_ONLY_VIEW = "portal_read_only"  # on a view function: it only reads, whatever the method
_DEFERRED = "portal_sqlite_deferred"  # on the connection: this transaction began deferred
_CHANGES = "portal_sqlite_changes"  # on the connection: total_changes when it began
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
_guarded = False

V = TypeVar("V", bound=Callable[..., Any])


def reads_first() -> None:
    """Let this request read without locking (see the note above) until ``write_lock()``.

    On PostgreSQL the session's connection is put in autocommit mode when the request first
    reads through the session (``_guard_execute``): a request that reads only with
    ``read_row`` takes no session connection at all.
    """
    g.portal_reads_first = True
    _install_guards()


def read_only(view: V) -> V:
    """Mark a view that only reads even when posted to (a preview, a check): it reads first."""
    setattr(view, _READ_ONLY_VIEW, True)
    return view


def _reads_first_when_reading() -> None:
    if request.method in SAFE_METHODS or getattr(
        current_app.view_functions.get(request.endpoint or ""), _READ_ONLY_VIEW, False
    ):
        reads_first()


def read_requests_first(app: Flask) -> None:
    """Make requests that read (safe methods, ``read_only`` views) read without locking.

    Register it before any other before-request function, so that nothing reads before it.
    """
    _install_guards()
    app.before_request(_reads_first_when_reading)


READER = "portal_reader"  # app.extensions: the autocommit engine ``read_row`` uses


def add_reader(app: Flask, engine: Engine, options: dict[str, Any]) -> Engine | None:
    """Give the app a second, small engine whose connections stay in autocommit mode, for
    ``read_row``. (On PostgreSQL switching a pooled connection into autocommit and back for
    each read costs more than the read; on SQLite the session's BEGIN, ROLLBACK and
    transaction bookkeeping do.) An in-memory SQLite database reads through the session."""
    sqlite = engine.dialect.name == "sqlite"
    if sqlite and engine.url.database in (None, "", ":memory:"):
        return None  # another engine would open another, empty database
    # Nothing to reset when a connection comes back: it never is in a transaction.
    options = {**options, "isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
    reader = create_engine(engine.url, **options)
    if sqlite:
        event.listen(reader, "connect", _sqlite_reader)
    app.extensions[READER] = reader
    return reader


def _sqlite_reader(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit: each SELECT is its own read of what is committed (WAL: writers never wait).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA query_only=ON")  # it only reads: a write through it fails
    cursor.close()


def dispose_engines() -> None:
    """Close the current app's pooled connections, the reader's too (tests, forked workers)."""
    db.engine.dispose()
    reader = current_app.extensions.get(READER)
    if reader is not None:
        reader.dispose()


def read_row(statement: Any, params: dict[str, Any]) -> Sequence[Any] | None:
    """The one row (or None) a read-only statement gives, read without a transaction (the
    statement sees what is committed, as in the session's READ COMMITTED transactions on
    PostgreSQL); through the session only for an in-memory SQLite database.

    On the reader it goes straight to the driver (``_Plan``): executing through SQLAlchemy
    costs several times the query itself (the statement's cache key, the result's metadata,
    the driver's column descriptions). Whenever something observes the reader's statements
    (an event listener, ``echo``), or the statement needs a parameter converted, it takes
    SQLAlchemy's path, which gives the same values.
    """
    reader = current_app.extensions.get(READER)
    if reader is None:
        return db.session.connection().execute(statement, params).one_or_none()
    plan = _plan(reader, statement)
    if plan is None:
        with reader.connect() as conn:
            return conn.execute(statement, params).one_or_none()
    connection = reader.raw_connection()
    try:
        cursor = _cursor(connection)
        cursor.execute(plan.sql, plan.parameters(params))
        rows = cursor.fetchall()  # to its end: SQLite's statement is done, holding no snapshot
    except reader.dialect.loaded_dbapi.Error as exc:
        if reader.dialect.is_disconnect(exc, connection.dbapi_connection, None):
            connection.invalidate(exc)
        connection.close()
        rows = None  # SQLAlchemy's error, or the row read on a new connection
    else:
        connection.close()
    if rows is None or len(rows) > 1:  # (more than one: SQLAlchemy's error too)
        with reader.connect() as conn:
            return conn.execute(statement, params).one_or_none()
    return plan.values(rows[0]) if rows else None


_CURSOR = "portal_reader_cursor"  # a pooled connection's info: (its DB-API connection, cursor)


def _cursor(connection: Any) -> Any:
    """The pooled connection's own cursor, kept with it (psycopg makes a cursor in about the
    time a small query takes)."""
    kept = connection.info.get(_CURSOR)
    if kept is None or kept[0] is not connection.dbapi_connection:
        dbapi_connection = connection.dbapi_connection
        kept = connection.info[_CURSOR] = (dbapi_connection, dbapi_connection.cursor())
    return kept[1]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled once for the reader's driver, and how its values convert."""

    sql: str
    positions: tuple[str, ...] | None  # the parameters' order, for a positional paramstyle
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column, SQLAlchemy's converter)

    def parameters(self, params: dict[str, Any]) -> Any:
        if self.positions is None:
            return params
        return tuple(params[name] for name in self.positions)

    def values(self, row: Sequence[Any]) -> Sequence[Any]:
        if not self.processors:
            return row
        converted = list(row)
        for column, processor in self.processors:
            converted[column] = processor(converted[column])
        return converted


_PLANS = "portal_reader_plans"  # app.extensions: id(statement) -> (statement, _Plan | None)


def _plan(reader: Engine, statement: Any) -> _Plan | None:
    if reader.echo or reader.dispatch.before_cursor_execute or reader.dispatch.after_cursor_execute:
        return None  # observed: through SQLAlchemy, which tells the observers
    plans = current_app.extensions.setdefault(_PLANS, {})
    found = plans.get(id(statement))
    if found is None or found[0] is not statement:
        found = plans[id(statement)] = (statement, _compile(reader.dialect, statement))
    return found[1]


def _compile(dialect: Any, statement: Any) -> _Plan | None:
    compiled = statement.compile(dialect=dialect)
    for bind in compiled.binds.values():
        if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            return None  # a parameter the driver does not take as it is
    processors = tuple(
        (n, processor)
        for n, column in enumerate(statement.selected_columns)
        if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))
    )
    positions = tuple(compiled.positiontup) if compiled.positional else None
    return _Plan(compiled.string, positions, processors)


def _changes(conn: Any) -> int:
    """Rows the SQLite connection has changed since it opened."""
    return int(conn.connection.dbapi_connection.total_changes)


def _reading() -> bool:
    """Whether this context's next transaction only reads (see the note above)."""
    return has_app_context() and bool(g.get("portal_reads_first")) and not g.get("portal_writing")


def sqlite_begin(conn: Any) -> None:
    """Begin a SQLite transaction (SQLAlchemy's ``begin`` event; see the note above)."""
    deferred = _reading()
    conn.info[_DEFERRED] = deferred
    if deferred:
        conn.info[_CHANGES] = _changes(conn)
        # Straight to the driver: a deferred BEGIN takes no lock and cannot wait or fail.
        conn.connection.driver_connection.execute("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _read_only(session: Session) -> str | None:
    """'deferred' (SQLite) or 'autocommit' (PostgreSQL) in a ``reads_first`` transaction."""
    if not session.in_transaction():
        return None
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        return "deferred" if conn.info.get(_DEFERRED) else None
    autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    return "autocommit" if autocommit else None


def _pending(session: Session) -> bool:
    """Whether the session holds changes not yet flushed (assignments of the same value aside)."""
    return bool(
        session.new or session.deleted or any(session.is_modified(o) for o in session.dirty)
    )


def write_lock(session: Session | None = None) -> bool:
    """Make the current transaction one that may write; call it before reading what you change.

    In a ``reads_first`` request the read-only transaction, which must have written nothing,
    is ended, which expires every loaded object, and the next transaction is a writing one
    (BEGIN IMMEDIATE on SQLite); once that one ends the request reads without locking again.
    Returns True when it restarted: the caller's objects are read again, under the lock, when
    next used, so it must check again whatever it decided from them. Elsewhere it does nothing
    (PostgreSQL code locks the rows it changes with FOR UPDATE; SQLite's writers hold the
    write lock from the start).
    """
    session = session or db.session()
    mode = _read_only(session)
    if mode is not None:
        conn = session.connection()
        wrote = mode == "deferred" and _changes(conn) != conn.info.get(_CHANGES)
        if wrote or _pending(session):
            raise RuntimeError(
                "write_lock() must be called before the first change of a transaction"
            )
        session.rollback()
    if has_app_context():
        g.portal_writing = True  # (after the rollback, which ends a transaction)
    return mode is not None


def _guard_execute(state: ORMExecuteState) -> None:
    session = state.session
    if not session.in_transaction() and _reading():
        # The request's first statement: begin its read-only transaction now, so that the
        # checks below see it (autocommit on PostgreSQL, a deferred BEGIN on SQLite).
        sqlite = session.get_bind().dialect.name == "sqlite"
        session.connection(execution_options=None if sqlite else _AUTOCOMMIT)
    locking = state.is_select and getattr(state.statement, "_for_update_arg", None) is not None
    if not (locking or state.is_insert or state.is_update or state.is_delete):
        return  # a plain read (textual SQL is taken for one: the portal writes through the ORM)
    if _read_only(session) is None:
        return
    if locking and not _pending(session):
        write_lock(session)  # FOR UPDATE: whoever reads this way is about to change it
    else:
        raise RuntimeError("a read-only request changes data: call write_lock() first")


def _guard_flush(session: Session, _context: Any, _instances: Any) -> None:
    if _read_only(session) is not None and _pending(session):
        raise RuntimeError("a read-only request changes data: call write_lock() first")


def _transaction_ended(_session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and has_app_context():
        g.pop("portal_writing", None)  # write_lock() held for that transaction only


def _install_guards() -> None:
    global _guarded
    if not _guarded:
        event.listen(Session, "do_orm_execute", _guard_execute)
        event.listen(Session, "before_flush", _guard_flush)
        event.listen(Session, "after_transaction_end", _transaction_ended)
        _guarded = True


if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
