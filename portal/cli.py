"""``flask portal ...`` commands for operators."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from werkzeug.serving import run_simple

from portal import audit, clock, jobs, mail, storage
from portal.accounts import admin
from portal.accounts.models import Role, User
from portal.config import ConfigError, decode_data_key
from portal.documents import keystore, seal
from portal.envelopes import bounces, verify
from portal.extensions import db
from portal.library import demo
from portal.records import demo as records_demo
from portal.records import retention

group = AppGroup("portal", help="Operate the signing portal.")

DEMO_TEAM = "Customer Care"
DEMO_USERS = (
    ("agent@demo.example", "Alex Agent", Role.AGENT, "demo-agent-pass-1"),
    ("compliance@demo.example", "Casey Compliance", Role.COMPLIANCE, "demo-compliance-pass-1"),
    ("admin@demo.example", "Ada Admin", Role.ADMIN, "demo-admin-pass-1"),
)


@group.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.AGENT.value)
@click.option("--team", "team_name", default=None, help="Team name; created when missing.")
@click.option("--name", default="", help="Full name (defaults to the email).")
def create_user(email: str, role: str, team_name: str | None, name: str) -> None:
    """Create a staff account and print its one-time password."""
    team = None
    if team_name:
        team = admin.find_team(team_name) or admin.create_team(team_name, by="cli")
    try:
        user, password = admin.create_user(email, name or email, role, team, by="cli")
    except admin.AccountError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created {user.email} ({user.role}, team {team.name if team else '-'}).")
    click.echo(f"One-time password: {password}")
    click.echo("They choose their own password and set up an authenticator at first sign-in.")


@group.command("seed-demo")
@click.option(
    "--records/--no-records",
    default=None,
    help="Ended demo refunds for the records centre (default: yes; no under TESTING).",
)
def seed_demo(records: bool | None) -> None:
    """Add the demo team, one user of each role, templates and refunds (idempotent)."""
    if current_app.config.get("PRODUCTION"):
        raise click.ClickException("seed-demo is for development and demos, not production.")
    team = admin.find_team(DEMO_TEAM) or admin.create_team(DEMO_TEAM, by="seed-demo")
    for email, name, role, password in DEMO_USERS:
        if not admin.email_taken(email):
            admin.create_user(email, name, role, team, by="seed-demo", password=password)
    users = {u.role: u for u in db.session.query(User).filter(User.email.like("%@demo.example"))}
    retention.ensure_default_policy()  # (migration 0014 made it, unless removed since)
    db.session.commit()
    for name in demo.seed(team, author=users["admin"], reviewer=users["compliance"]):
        click.echo(f"Added the approved template {name!r}.")
    if records is None:  # (the suite's tests count envelopes and events of their own)
        records = not current_app.config.get("TESTING")
    if records and records_demo.seed(users["agent"]):  # ended refunds for the records centre
        click.echo("Added ended demo refunds (Jordan Rivera, Amara Okafor, Lukas Brandt).")
    click.echo("Demo sign-ins (you set up an authenticator app at first sign-in):")
    for email, _name, role, password in DEMO_USERS:
        click.echo(f"  {role.value:<11} {email:<26} {password}")


PROGRESS_EVERY = 1_000_000  # events between verify-audit's progress lines


def _progress_lines() -> Callable[[int], None]:
    shown = [0]

    def show(count: int) -> None:
        if count // PROGRESS_EVERY > shown[0]:
            shown[0] = count // PROGRESS_EVERY
            click.echo(f"  {count:,} events checked", err=True)

    return show


@group.command("verify-audit")
def verify_audit() -> None:
    """Check the audit chain: exit 0 when intact, 1 naming the first bad event.

    It reads in short transactions beside the running portal: nobody waits for it.
    """
    result = audit.verify(progress=_progress_lines())
    if result.ok:
        click.echo(f"Audit chain intact: {result.count} events.")
        return
    click.echo(
        f"Audit chain BROKEN at sequence {result.first_bad_seq}: {result.reason} "
        f"({result.count} events verified before it).",
        err=True,
    )
    sys.exit(1)


@group.command("tick")
@click.option("--now", "moment", envvar="PORTAL_NOW", default=None, metavar="WHEN",
              help="Run as if it were WHEN (2033-12-05T00:00:00Z); not in production.")  # fmt: skip
def tick(moment: str | None) -> None:
    """Run every periodic task once (reminders, expiry, retention, sweepers)."""
    if moment:
        if current_app.config.get("PRODUCTION"):
            raise click.ClickException("--now (PORTAL_NOW) moves the clock: not in production.")
        try:
            clock.travel_to(clock.parse_moment(moment))
        except clock.ClockError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Clock moved to {clock.utcnow():%Y-%m-%d %H:%M:%S} UTC for this run.")
    try:
        for name, outcome in jobs.run_periodic().items():
            click.echo(f"{name}: {outcome}")
    finally:
        clock.reset()


@group.command("rotate-data-key")
@click.option("--old-key", envvar="OLD_DATA_KEY", required=True, help="The previous DATA_KEY.")
def rotate_data_key(old_key: str) -> None:
    """Re-encrypt every blob sealed with the old key under the current DATA_KEY, and re-wrap
    the audit chain's envelope keys (``portal.records.keys``) wrapped under it."""
    from portal.integrations import webhooks
    from portal.records import keys

    try:
        old = decode_data_key(old_key)
        count = storage.rotate(old, progress=lambda n: click.echo(f"  {n} re-encrypted"))
        wrapped = keys.rotate(old, progress=lambda n: click.echo(f"  {n} envelope keys re-wrapped"))
        hooks = webhooks.rewrap_secrets(old)
    except (ConfigError, storage.BlobError) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    left = storage.unreadable_key_ids()
    click.echo(f"Re-encrypted {count} blobs under the current key.")
    click.echo(f"Re-wrapped {wrapped} envelope keys of the audit trail under the current key.")
    click.echo(f"Re-wrapped {hooks} webhook secrets under the current key.")
    if left:
        click.echo(f"Blobs under other keys remain: {', '.join(left)}", err=True)
    keys_left = keys.unreadable_key_ids()
    if keys_left:
        click.echo(f"Envelope keys under other keys remain: {', '.join(keys_left)}", err=True)
    if left or keys_left:
        sys.exit(1)


@group.command("verify-pdf")
@click.argument("path", type=click.Path(dir_okay=False))
def verify_pdf(path: str) -> None:
    """Check a PDF like the verify page: exit 0 when sealed here and unchanged, 1 otherwise."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(verify.MAX_UPLOAD + 1)
    except OSError as exc:
        click.echo(f"{path}: cannot be read ({exc.strerror}).", err=True)
        sys.exit(1)
    verdict = verify.verify_pdf(data)
    db.session.rollback()
    if not verdict.verified:
        click.echo(f"{verdict.outcome.upper()}: {verdict.message}", err=True)
        sys.exit(1)
    click.echo(f"VERIFIED: {verdict.message}")
    if verdict.report is not None:
        click.echo(f"  report     {verdict.report}")
        return
    assert verdict.completed_at is not None
    click.echo(f"  envelope   {verdict.envelope_id}")
    click.echo(f"  completed  {verdict.completed_at:%Y-%m-%d %H:%M:%S} UTC")
    for name, masked in verdict.signers:
        click.echo(f"  signed by  {name} ({masked})")


@group.command("make-seal-cert")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--password", envvar="SEAL_PKCS12_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="Password for the PKCS#12 file.")  # fmt: skip
@click.option("--days", default=825, show_default=True, help="How long it is valid.")
def make_seal_cert(path: str, password: str, days: int) -> None:
    """Write a self-signed sealing certificate as PKCS#12 (for trials; use a CA's in production)."""
    identity = seal.generate_self_signed(
        str(current_app.config["ORG_NAME"]), now=clock.utcnow(), days=days
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(seal.to_pkcs12(identity, password.encode()))
    click.echo(f"Wrote {path}: {identity.subject}, valid until {identity.not_after:%Y-%m-%d}.")
    click.echo("Self-signed: PDF readers show the seal as intact but the identity as unknown.")


@group.command("bounce")
@click.argument("file", default="-", metavar="[FILE]")
def bounce(file: str) -> None:
    """Process one bounce (a delivery status notification) from FILE or stdin.

    For an MTA to pipe bounces to: exit 0 whatever the bounce says (also when it is not about
    our mail), 1 only when the input cannot be read.
    """
    try:
        with click.open_file(file, "rb") as handle:  # "-" is stdin
            data = bounces.read_limited(handle)
    except OSError as exc:
        click.echo(f"{file}: cannot be read ({exc.strerror or exc}).", err=True)
        sys.exit(1)
    click.echo(bounces.process_bounce(data))


def _ticker(app: Flask, every: int) -> None:
    while True:
        time.sleep(every)
        with app.app_context():
            jobs.run_periodic()


@group.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
def serve(host: str, port: int) -> None:
    """Development server, with periodic work on a timer (embedded mode)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if "PUBLIC_BASE_URL" not in os.environ:  # links in emails point at this server
        app.config["PUBLIC_BASE_URL"] = f"http://{host}:{port}"
    threading.Thread(target=_ticker, args=(app, 60), daemon=True).start()
    users = db.session.query(User).count()
    sealing_identity = keystore.identity()  # the development certificate, made on first start
    db.session.commit()
    db.session.remove()  # do not hold SQLite's write lock while serving
    click.echo(f"Sealing certificate: {sealing_identity.subject}")
    click.echo(f"Signing portal on http://{host}:{port}/  ({users} staff accounts)")
    click.echo("Press Ctrl+C to stop.")
    run_simple(host, port, app, threaded=True, use_reloader=False)


def init_app(app: Flask) -> None:
    """Register the command group."""
    group.add_command(mail.send_test_mail)
    app.cli.add_command(group)
