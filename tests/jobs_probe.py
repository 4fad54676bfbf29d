"""Jobs used by the tests: each leaves an audit event so its effect is visible."""

from __future__ import annotations

from portal import audit, jobs
from portal.extensions import db


@jobs.job(queue="default")
def note(text: str) -> None:
    audit.record("test.job_ran", data={"text": text})
    db.session.commit()


@jobs.job(queue="pdf")
def note_pdf(text: str) -> None:
    audit.record("test.pdf_job_ran", data={"text": text})
    db.session.commit()
