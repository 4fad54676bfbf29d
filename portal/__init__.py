"""The signing portal: a Flask application factory and nothing at import time."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, has_request_context, request
from flask_babel import get_locale
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from portal.config import load_config
from portal.extensions import (
    add_reader,
    babel,
    csrf,
    csrf_check_by_method_first,
    db,
    htmx,
    limiter,
    login_manager,
    migrate,
    ping_when_idle,
    read_requests_first,
    skip_idle_rate_limit_check,
    sqlite_begin,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see extensions.sqlite_begin) and make SQLite behave.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Deleted content is overwritten in the file, not left in free pages (purges must leave no
    # personal data behind; see records.purge.forget_on_disk for the write-ahead log).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _locale() -> str | None:
    if not has_request_context():
        return None  # jobs and the CLI use the default locale
    return request.accept_languages.best_match(["en", "es"]) or "en"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the portal: settings from the environment, then ``config`` on top."""
    app = Flask(
        __name__,
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
        instance_path=os.environ.get("PORTAL_INSTANCE", os.path.join(ROOT, "instance")),
    )
    app.config.update(load_config(app.instance_path))
    if config:
        app.config.update(config)
    app.config.setdefault("SEND_FILE_MAX_AGE_DEFAULT", 3600)
    app.config.setdefault(
        "BABEL_TRANSLATION_DIRECTORIES", os.path.join(ROOT, "portal", "translations")
    )
    app.jinja_env.add_extension("jinja2.ext.do")
    if int(app.config["TRUSTED_PROXIES"]):
        hops = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    # pool_pre_ping costs a round trip per request: ping_when_idle (below) tests only the
    # connections that sat unused for a while.
    engine_options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    ping = bool(engine_options.pop("pool_pre_ping", False))
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"), compare_type=True)
    login_manager.init_app(app, add_context_processor=False)  # current_user: see accounts
    csrf.init_app(app)
    csrf_check_by_method_first(app)
    htmx.init_app(app)
    babel.init_app(app, locale_selector=_locale)
    limiter.init_app(app)
    read_requests_first(app)  # before the other before-request functions: they may read

    with app.app_context():
        reader = add_reader(app, db.engine, engine_options)
        if ping:
            ping_when_idle(db.engine)
            if reader is not None:
                ping_when_idle(reader)
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)
            event.listen(db.engine, "begin", sqlite_begin)

    from portal import audit, cli, health, jobs, mailbox, web
    from portal.accounts import init_app as init_accounts
    from portal.bulk.routes import bp as bulk_bp
    from portal.documents import keystore
    from portal.envelopes.routes import bp as console_bp
    from portal.integrations import init_app as init_integrations
    from portal.library.routes import bp as library_bp
    from portal.records.routes import bp as records_bp
    from portal.signing.public_routes import bp as public_bp
    from portal.signing.routes import bp as signing_bp

    jobs.install()
    web.install(app)
    init_accounts(app)
    app.register_blueprint(console_bp)
    app.register_blueprint(library_bp)
    app.register_blueprint(signing_bp)
    app.register_blueprint(public_bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(mailbox.bp)
    app.register_blueprint(bulk_bp)
    app.register_blueprint(records_bp)
    init_integrations(app)
    csrf.exempt(health.bp)
    cli.init_app(app)
    keystore.startup_check(app)

    app.jinja_env.filters["event_label"] = audit.label

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "org_name": app.config["ORG_NAME"],
            "production": app.config["PRODUCTION"],
            "get_locale": get_locale,
        }

    skip_idle_rate_limit_check(app)  # last: once every blueprint (and its limits) is in
    return app
