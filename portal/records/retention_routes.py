"""Routes of the records centre (see portal/records/__init__.py): retention policies, the
envelopes due for purge (with their review window and postponements), and a version's policy
chosen in the template editor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from portal import audit, clock, web
from portal.envelopes.models import Envelope
from portal.extensions import db, write_lock
from portal.library.models import TemplateVersion
from portal.records import bp, officers_only, retention
from portal.records.retention import RetentionError, RetentionPolicy


def _policy_or_404(policy_id: int) -> RetentionPolicy:
    policy = db.session.get(RetentionPolicy, policy_id)
    if policy is None:
        abort(404)
    return policy


def _policies_page(error: str | None = None, form: Any = None, status: int = 200) -> Any:
    low, high = retention.years_range()
    last = retention.latest_sweep()
    return render_template(
        "records/retention.html",
        policies=retention.policies(),
        usage=retention.usage(),
        clocks=retention.CLOCK_LABELS,
        actions=retention.ACTION_LABELS,
        low=low,
        high=high,
        review_days=retention.review_days(),
        form=form or {},
        error=error,
        last_sweep=audit.reveal([last])[0] if last is not None else None,
    ), status


@bp.get("/retention")
@officers_only
def retention_policies() -> Any:
    """Retention policies: what they keep, for how long, from when, and what happens then."""
    return _policies_page()


def _posted(form: Any) -> tuple[str, str, str, str]:
    """A policy form's name, years, clock start and action, as posted (checked later)."""
    names = ("name", "years", "clock_start", "action")
    return tuple(str(form.get(name, ""))[:200] for name in names)  # type: ignore[return-value]


@bp.post("/retention")
@officers_only
def retention_policy_create() -> Any:
    form = request.form
    write_lock()
    try:
        policy = retention.create_policy(*_posted(form), by=current_user)
    except RetentionError as exc:
        db.session.rollback()
        return _policies_page(str(exc), form, 422)
    db.session.commit()
    flash(f"Retention policy {policy.name} created.", "success")
    return redirect(url_for("records.retention_policies"), code=303)


@bp.route("/retention/policies/<int:policy_id>", methods=["GET", "POST"])
@officers_only
def retention_policy_edit(policy_id: int) -> Any:
    """Change a policy: everything while no template or envelope uses it, its name after."""
    policy = _policy_or_404(policy_id)
    error = None
    form: Any = {
        "name": policy.name,
        "years": policy.years,
        "clock_start": policy.clock_start,
        "action": policy.action,
    }
    if request.method == "POST":
        write_lock()
        policy = _policy_or_404(policy_id)
        form = request.form
        try:
            changes = retention.change_policy(policy, *_posted(form), by=current_user)
        except RetentionError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            db.session.commit()
            flash("Policy saved." if changes else "Nothing changed.", "success")
            return redirect(url_for("records.retention_policies"), code=303)
    low, high = retention.years_range()
    page = render_template(
        "records/retention_policy.html",
        policy=policy,
        in_use=retention.in_use(policy),
        form=form,
        error=error,
        clocks=retention.CLOCK_LABELS,
        actions=retention.ACTION_LABELS,
        low=low,
        high=high,
    )
    return page, 422 if error else 200


@bp.get("/retention/due")
@officers_only
def retention_due() -> str:
    """What the sweep will purge, and when: each envelope's review window."""
    rows, total, next_after = retention.due(request.args.get("after"))
    last = retention.latest_sweep()
    last_sweep = audit.reveal([last])[0] if last is not None else None
    return render_template(
        "records/retention_due.html",
        rows=rows,
        total=total,
        next_after=next_after,
        first_page=not request.args.get("after"),
        now=clock.utcnow(),
        review_days=retention.review_days(),
        last_sweep=last_sweep,
        swept=_swept_envelopes(last_sweep),
    )


def _swept_envelopes(sweep: audit.Revealed | None) -> dict[int, Envelope]:
    """The envelopes a sweep's event names as kept, by id (for their titles and links)."""
    skipped = sweep.data.get("skipped") if sweep is not None else None
    ids = {item["envelope"] for item in skipped or () if isinstance(item.get("envelope"), int)}
    if not ids:
        return {}
    found = db.session.execute(select(Envelope).where(Envelope.id.in_(ids))).scalars()
    return {envelope.id: envelope for envelope in found}


def _due_envelope_or_404(envelope_id: int) -> Envelope:
    envelope = db.session.get(Envelope, envelope_id)
    review = db.session.get(retention.RetentionReview, envelope_id)
    if envelope is None or review is None or envelope.purged_at is not None:
        abort(404)
    return envelope


def _parse_day(value: str) -> datetime:
    text = (value or "").strip()[:40]
    if not text:
        raise RetentionError("Choose the new purge date.")
    try:
        return clock.parse_moment(text)
    except clock.ClockError as exc:
        raise RetentionError(f"{text!r} is not a date; pick one like 2031-06-30.") from exc


@bp.route("/retention/due/<int:envelope_id>/postpone", methods=["GET", "POST"])
@officers_only
def retention_postpone(envelope_id: int) -> Any:
    """Postpone one envelope's purge to a later date; a reason is required."""
    envelope = _due_envelope_or_404(envelope_id)
    error = None
    if request.method == "POST":
        write_lock()
        envelope = _due_envelope_or_404(envelope_id)
        try:
            until = _parse_day(request.form.get("until", ""))
            review = retention.postpone(
                envelope, until, request.form.get("reason", ""), current_user
            )
        except RetentionError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            db.session.commit()
            flash(
                f"Purge of envelope {envelope.id} postponed to "
                f"{clock.as_utc(review.purge_after):%Y-%m-%d}.",
                "success",
            )
            return redirect(url_for("records.retention_due"), code=303)
    page = render_template(
        "records/retention_postpone.html",
        envelope=envelope,
        review=db.session.get(retention.RetentionReview, envelope_id),
        form=request.form,
        error=error,
    )
    return page, 422 if error else 200


@bp.post("/retention/versions/<int:version_id>/policy")
@officers_only
def retention_version_policy(version_id: int) -> Response:
    """The template editor's policy choice for a draft version."""
    write_lock()
    version = db.session.get(TemplateVersion, version_id)
    if version is None:
        abort(404)
    try:
        policy = retention.set_version_policy(version, request.form.get("policy"), current_user)
    except RetentionError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(f"Envelopes of this version will be kept under {policy.summary}.", "success")
    return redirect(url_for("library.version", version_id=version_id) + "#retention-heading")


@bp.app_context_processor
def _retention_helpers() -> dict[str, Any]:
    """For the template editor (a library page) to offer the policies."""
    return {
        "retention_policies": retention.policies,
        "retention_policy_for": retention.policy_for,
    }


# ---------------------------------------------------------------- purged envelopes (tombstones)

# The console's envelope pages that need the envelope's files or people; a purged envelope's
# are answered here instead (``_tombstone`` runs before every request's view).
_FILES = frozenset(
    {
        "console.sealed_document",
        "console.audit_report",
        "console.filled_document",
        "console.original_document",
        "console.page_image",
        "console.retry_seal",
    }
)
_PEOPLE = frozenset(
    {"console.resend", "console.correct_email", "console.remind", "console.void", "console.sent"}
)


def purged_note(envelope: Envelope) -> str:
    """What a purged envelope's downloads say."""
    policy = envelope.retention_policy
    under = f" under the retention policy {policy.name}" if policy is not None else ""
    when = clock.as_utc(envelope.purged_at) if envelope.purged_at else clock.utcnow()
    return f"The document was purged{under} on {when:%Y-%m-%d}."


def _purged_envelope(public_id: object) -> Envelope | None:
    from portal.accounts.access import can_see_team

    if not isinstance(public_id, str) or not current_user.is_authenticated:
        return None
    envelope = db.session.execute(
        select(Envelope).where(Envelope.public_id == public_id)
    ).scalar_one_or_none()
    if envelope is None or envelope.purged_at is None:
        return None
    if not can_see_team(current_user, envelope.team_id):
        return None  # (the view answers 404, as for any envelope of another team)
    return envelope


@bp.before_app_request
def _tombstone() -> Any:
    """Answer the console's pages of a purged envelope: its page is the tombstone, its files
    say when and under which policy they were purged, its people's actions are refused."""
    endpoint = request.endpoint or ""
    if endpoint != "console.envelope" and endpoint not in _FILES | _PEOPLE:
        return None
    envelope = _purged_envelope((request.view_args or {}).get("public_id"))
    if envelope is None:
        return None
    documents_kept = envelope.purge_action == retention.Action.ANONYMISE.value
    if endpoint == "console.envelope":
        return render_template(
            "records/retention_tombstone.html",
            envelope=envelope,
            policy=envelope.retention_policy,
            documents_kept=documents_kept,
            note=purged_note(envelope),
        )
    if endpoint == "console.sealed_document" and documents_kept:
        return None  # (anonymised only: the sealed file is still there)
    if endpoint == "console.page_image":
        return web.error_response(410, purged_note(envelope))
    if endpoint in _PEOPLE:
        flash("This envelope was purged: its recipients' details are gone.", "error")
    else:
        flash(purged_note(envelope), "error")
    return redirect(url_for("console.envelope", public_id=envelope.public_id), code=303)
