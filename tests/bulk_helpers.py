"""Helpers of the bulk send tests: files to upload, a signed-in agent, waiting for a batch."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal.bulk.models import BulkBatch
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.mail import Message

if TYPE_CHECKING:
    from tests.conftest import Portal

REFUND = {
    "customer.name": "Ana Muñoz",
    "customer.email": "ana@example.com",
    "order.number": "ORD-1",
    "order.date": "1 May 2026",
    "refund.amount": "€10.00",
    "refund.method": "card",
    "refund.reason": "Arrived damaged",
}


def refund_row(number: int, **changes: str) -> dict[str, str]:
    """One customer's row for the demo refund (distinct name, email and order)."""
    row = dict(REFUND)
    row.update(
        {
            "customer.name": f"Customer {number}",
            "customer.email": f"customer{number}@example.com",
            "order.number": f"ORD-{number:05d}",
        }
    )
    row.update(changes)
    return row


def to_csv(headings: list[str], rows: list[dict[str, str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(headings)
    for row in rows:
        writer.writerow([row.get(h, "") for h in headings])
    return out.getvalue()


@dataclass
class Bulk:
    """A signed-in agent on the bulk send pages."""

    app: Flask
    portal: Portal
    version_id: int

    def template(self, version_id: int | None = None) -> str:
        got = self.portal.client.get(f"/bulk/templates/{version_id or self.version_id}.csv")
        assert got.status_code == 200
        return got.get_data().decode("utf-8-sig")

    def headings(self, version_id: int | None = None) -> list[str]:
        return list(csv.reader(io.StringIO(self.template(version_id))))[1]

    def upload(self, data: bytes | str, name: str = "customers.csv", version_id: int | None = None):
        if isinstance(data, str):
            data = data.encode()
        # Encoded here, in memory: the test client would spool a large body to a temporary
        # file that it never closes.
        boundary, body = encode_multipart(
            {"csrf_token": self.portal.csrf(), "file": FileStorage(io.BytesIO(data), name)}
        )
        return self.portal.client.post(
            f"/bulk/upload/{version_id or self.version_id}",
            data=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )

    def uploaded(self, data: bytes | str, **kwargs: Any) -> str:
        """Upload a file that is read; returns the batch's public id."""
        response = self.upload(data, **kwargs)
        assert response.status_code == 302, response.get_data(as_text=True)
        return response.headers["Location"].rsplit("/", 1)[1]

    def page(self, public_id: str) -> str:
        response = self.portal.client.get(f"/bulk/{public_id}")
        assert response.status_code == 200
        return response.get_data(as_text=True)

    def send(self, public_id: str, **form: str) -> str:
        response = self.portal.post(f"/bulk/{public_id}/send", form)
        assert response.status_code == 302
        return self.page(public_id)

    def batch(self, public_id: str) -> BulkBatch:
        with self.app.app_context():
            batch = db.session.execute(
                select(BulkBatch).where(BulkBatch.public_id == public_id)
            ).scalar_one()
            db.session.expunge(batch)
            return batch

    def wait(self, public_id: str, timeout: float = 120) -> BulkBatch:
        """Until the batch's background job has ended it."""
        deadline = time.monotonic() + timeout
        while (batch := self.batch(public_id)).state == "sending" or batch.voiding:
            assert time.monotonic() < deadline, f"batch still {batch.state}"
            time.sleep(0.2)
        return batch


def counts(app: Flask) -> tuple[int, int]:
    """(envelopes, signing emails) in the database."""
    with app.app_context():
        envelopes = db.session.scalar(select(func.count()).select_from(Envelope))
        emails = db.session.scalar(
            select(func.count()).select_from(Message).where(Message.kind == "signing_request")
        )
        db.session.rollback()
        return int(envelopes or 0), int(emails or 0)


def problems(page: str) -> list[tuple[str, str, str]]:
    """(row, column, message) of the problems table on a batch page."""
    table = page.split('id="problems"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td><td>(.*?)</td></tr>", table)
    return [(r, c, m) for r, c, m in cells]


def approved_pdf_template(app: Flask, pdf: bytes | None = None) -> int:
    """An approved uploaded-PDF template of the demo team (after seed-demo), with a choice
    field filled from a merge key; returns its version id."""
    from portal.accounts.models import User
    from portal.library import operations as library

    if pdf is None:
        from tests.test_documents import good_pdf

        pdf = good_pdf()

    with app.app_context():
        admin = db.session.scalars(select(User).where(User.email == "admin@demo.example")).one()
        reviewer = db.session.scalars(
            select(User).where(User.email == "compliance@demo.example")
        ).one()
        version = library.create_from_pdf(
            "Warranty", "other", admin.team, pdf, "warranty.pdf", by=admin
        )
        version.merge_keys = [
            {"key": "customer.name", "label": "Customer name", "sample": "Ana"},
            {"key": "plan", "label": "Plan", "sample": "basic"},
        ]
        db.session.commit()
        library.add_field(version, "signature", 1, None, "customer", by=admin)
        choice = library.add_field(version, "select", 1, None, "customer", by=admin)
        library.update_field(
            choice, {"merge_key": "plan", "options": ["basic", "premium"], "label": "Plan"},
            by=admin,
        )  # fmt: skip
        library.submit(version, by=admin)
        library.approve(version, by=reviewer)
        return version.id


@pytest.fixture(autouse=True)
def bulk_threads_end():
    """Embedded mode runs batch jobs in threads: let them end before the test's database goes."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("bulk-"):
            thread.join(60)
            assert not thread.is_alive(), f"{thread.name} still runs"
