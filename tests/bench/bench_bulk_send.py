"""Bulk send of 10,000 rows against a bare SQLAlchemy bulk insert of the same rows.

Design budget: a bulk send of 10,000 CSV rows, up to "every envelope created and every signing
email queued", takes at most 3x a bare SQLAlchemy bulk insert of the same envelope and
recipient rows, both measured in the same run on the same database.

Setup (per backend: SQLite, and PostgreSQL when ``tests.services.PostgresServer`` can start
one): a migrated database, ``seed-demo``, and an approved *uploaded-PDF* template (one page, a
signature field and a choice field filled from a merge key; one signer; link authentication;
embedded settings: no ``MAIL_SERVER``, so the emails wait in the outbox as ``queued`` rows,
which is what "queued" means here: the RQ nudge that follows with Redis is not timed). Before
each round a file of ``N`` distinct customers is uploaded and checked (``drafts.upload``, not
timed; its time is printed).

Ours: ``drafts.start`` (the rows become pending) and the batch job run to its end in this
process (``jobs.execute("portal.bulk.sending:run_batch")``, ``BULK_MAIL_PER_MINUTE=0``: the mail
pace is a deliberate wait, not work): chunks of 1,000 rows, each envelope with the template's
stored document (shared), its recipient with a link token, the signing email rendered into the
outbox, three audit events in the hash chain, the rows marked, one commit per chunk; then the
batch finished and the agent's email queued. Every envelope is complete and signable. The jobs
it asks for are counted as RQ would receive them, not run (the batch job itself, which this
process runs instead, and for authored documents the page images).

Baseline: the envelope and recipient rows ours just wrote, read back beforehand (new public
ids and token hashes), inserted with two bare Core ``insert()`` executemany calls and one
commit, their ids taken beforehand as ours takes them (one ``nextval`` query per table on
PostgreSQL, after the largest id on SQLite): the least work that inserts the same rows. (With
``insert(...).returning(id)`` instead, SQLAlchemy inserts one row per statement on SQLite and
the baseline is about 2.5x slower.)

Method: ROUNDS interleaved rounds after a warm-up of each; min / median / max of each and of
the ratio ours / baseline; the verdict is on the medians. Before each timed part the database
is settled (not timed): SQLite's write-ahead log checkpointed and emptied, PostgreSQL's GIN
pending lists (the trigram index of search text) merged and a CHECKPOINT taken, so neither
contender pays for what the other left behind (a checkpoint of the other's log, the merge of
the other's 10,000 search texts) by luck of timing. Authored templates are rendered per
customer (each envelope has its own document): their rate, for a smaller batch of the demo
refund, is printed as information.

Environment: ``BENCH_BULK_N`` (rows, default 10000), ``BENCH_BULK_ROUNDS`` (default 3),
``BENCH_BULK_AUTHORED`` (rows of the authored batch, default 200), ``BENCH_PROFILE=1`` prints a
cProfile summary of one run of ours.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tests.bench.common import base_config, bench_folder, start_postgres

N = int(os.environ.get("BENCH_BULK_N", "10000"))
ROUNDS = int(os.environ.get("BENCH_BULK_ROUNDS", "3"))
AUTHORED = int(os.environ.get("BENCH_BULK_AUTHORED", "200"))
BUDGET = 3.0
NAME = "bulk_send"
RUN_BATCH = "portal.bulk.sending:run_batch"


def _pdf() -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    canvas.drawString(72, 760, "Warranty acknowledgement")
    for line in range(30):
        canvas.drawString(72, 720 - 18 * line, f"Clause {line + 1}: the customer acknowledges.")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _prepare(uri: str) -> Any:
    """Migrate, seed, and approve the uploaded-PDF template; the app and its version id."""
    from flask_migrate import upgrade

    from portal import create_app
    from portal.extensions import db
    from tests.bulk_helpers import approved_pdf_template

    app = create_app(base_config(uri, BULK_MAIL_PER_MINUTE=0))
    with app.app_context():
        upgrade()
        result = app.test_cli_runner().invoke(args=["portal", "seed-demo"])
        assert result.exit_code == 0, result.output
        db.session.remove()
    return app, approved_pdf_template(app, _pdf())


def _file(version: Any, rows: int, offset: int) -> bytes:
    import csv

    from portal.bulk.columns import columns_for

    headings = [c.heading for c in columns_for(version)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headings)
    for n in range(offset, offset + rows):
        values = {
            "customer.name": f"Customer {n}",
            "Customer: email": f"customer{n}@example.com",
            "plan": "basic" if n % 2 else "premium",
            "Ticket": f"CASE-{n}",
            "refund.method": "card",
            "refund.amount": "€10.00",
            "refund.reason": "Damaged",
            "order.number": f"ORD-{n}",
            "order.date": "1 May 2026",
        }
        writer.writerow([values.get(h, "") for h in headings])
    return out.getvalue().encode()


def _demo(email: str) -> Any:
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.extensions import db

    return db.session.scalars(select(User).where(User.email == email)).one()


def _refund() -> Any:
    from sqlalchemy import select

    from portal.extensions import db
    from portal.library.models import Template

    return db.session.scalars(select(Template).where(Template.name == "Refund authorization")).one()


@dataclass
class Round:
    """One prepared batch (checked, not yet sent)."""

    batch_id: int
    upload_seconds: float


class Contenders:
    """Ours and the baseline on one backend."""

    def __init__(self, app: Any, version_id: int) -> None:
        self.app = app
        self.version_id = version_id
        self.offset = 0
        self.last_batch: int | None = None
        self.queued: list[str] = []

    def prepare(self, version_id: int | None = None, rows: int = N) -> Round:
        from portal.bulk import drafts
        from portal.extensions import db
        from portal.library.models import TemplateVersion

        with self.app.app_context():
            version = db.session.get(TemplateVersion, version_id or self.version_id)
            data = _file(version, rows, self.offset)
            self.offset += rows
            started = time.perf_counter()
            batch = drafts.upload(version, "customers.csv", data, by=_demo("agent@demo.example"))
            seconds = time.perf_counter() - started
            assert batch.ready_rows == rows, (batch.ready_rows, batch.invalid_rows)
            batch_id = batch.id
            db.session.remove()
        return Round(batch_id, seconds)

    def settle(self) -> None:
        """Leave no deferred work of an earlier contender to the next one (not timed)."""
        from sqlalchemy import text

        from portal.extensions import db

        with self.app.app_context():
            if db.engine.dialect.name == "sqlite":
                db.session.remove()
                raw = db.engine.raw_connection()  # the driver's: no transaction around it
                try:
                    raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    raw.close()
            else:
                gin = db.session.scalars(
                    text(
                        "SELECT i.indexrelid FROM pg_index i"
                        " JOIN pg_class c ON c.oid = i.indexrelid"
                        " JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'gin'"
                    )
                ).all()
                for oid in gin:
                    db.session.execute(text("SELECT gin_clean_pending_list(:oid)"), {"oid": oid})
                db.session.commit()
                db.session.execute(text("CHECKPOINT"))
            db.session.commit()
            db.session.remove()

    def ours(self, prepared: Round) -> float:
        from portal import jobs
        from portal.bulk import drafts
        from portal.bulk.models import BulkBatch
        from portal.extensions import db

        queued: list[str] = []

        class Queue:  # stands for RQ: what would be enqueued is counted, not run here
            def enqueue(self, _execute: Any, name: str, *args: Any, **kwargs: Any) -> None:
                queued.append(name)

        real_queue, inline = jobs.queue, self.app.config["JOBS_INLINE"]
        jobs.queue = lambda app, name: Queue()  # type: ignore[assignment]
        self.app.config["JOBS_INLINE"] = False
        try:
            with self.app.app_context():
                agent = _demo("agent@demo.example")
                batch = db.session.get(BulkBatch, prepared.batch_id)
                started = time.perf_counter()
                drafts.start(batch, agent, exclude_problems=False)
                outcome = jobs.execute(RUN_BATCH, prepared.batch_id)
                elapsed = time.perf_counter() - started
                batch = db.session.get(BulkBatch, prepared.batch_id)
                assert outcome == "done" and batch.created_count == batch.total_rows, outcome
                db.session.remove()
        finally:
            jobs.queue = real_queue  # type: ignore[assignment]
            self.app.config["JOBS_INLINE"] = inline
        self.last_batch = prepared.batch_id
        self.queued = queued
        return elapsed

    def baseline_rows(self) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
        """The envelope rows and, per envelope, the recipient rows ours last wrote."""
        from sqlalchemy import inspect, select

        from portal.bulk.models import BulkRow
        from portal.envelopes.models import Envelope, Recipient
        from portal.extensions import db

        with self.app.app_context():
            ids = select(BulkRow.envelope_id).where(BulkRow.batch_id == self.last_batch)
            envelope_columns = [c.key for c in inspect(Envelope).column_attrs if c.key != "id"]
            recipient_columns = [
                c.key for c in inspect(Recipient).column_attrs if c.key not in ("id", "envelope_id")
            ]
            envelopes, people = [], []
            for envelope in db.session.scalars(
                select(Envelope).where(Envelope.id.in_(ids)).order_by(Envelope.id)
            ):
                row = {name: getattr(envelope, name) for name in envelope_columns}
                row["public_id"] = uuid.uuid4().hex
                envelopes.append(row)
                people.append(
                    [
                        {
                            **{name: getattr(p, name) for name in recipient_columns},
                            "token_hash": uuid.uuid4().hex + uuid.uuid4().hex,
                        }
                        for p in db.session.scalars(
                            select(Recipient).where(Recipient.envelope_id == envelope.id)
                        )
                    ]
                )
            db.session.remove()
        return envelopes, people

    def baseline(self, envelopes: list[dict[str, Any]], people: list[list[dict]]) -> float:
        from typing import cast

        from sqlalchemy import Table

        from portal.bulk.creating import next_ids
        from portal.envelopes.models import Envelope, Recipient
        from portal.extensions import db

        envelope_table = cast(Table, Envelope.__table__)
        recipient_table = cast(Table, Recipient.__table__)
        with self.app.app_context():
            started = time.perf_counter()
            ids = next_ids(envelope_table, len(envelopes))
            envelope_rows = [{**row, "id": i} for row, i in zip(envelopes, ids, strict=True)]
            recipient_rows = [
                {**person, "envelope_id": envelope_id}
                for envelope_id, persons in zip(ids, people, strict=True)
                for person in persons
            ]
            recipient_ids = next_ids(recipient_table, len(recipient_rows))
            for row, i in zip(recipient_rows, recipient_ids, strict=True):
                row["id"] = i
            db.session.execute(envelope_table.insert(), envelope_rows)
            db.session.execute(recipient_table.insert(), recipient_rows)
            db.session.commit()
            elapsed = time.perf_counter() - started
            db.session.remove()
        return elapsed


def _stats(values: list[float]) -> str:
    return f"min {min(values):.2f} / median {statistics.median(values):.2f} / max {max(values):.2f}"


def _authored_rate(contenders: Contenders, label: str) -> None:
    """Envelopes a second for the authored demo refund (rendered per customer)."""
    from portal.extensions import db
    from portal.library import operations as library

    with contenders.app.app_context():
        version_id = library.approved_version(_refund()).id
        db.session.remove()
    prepared = contenders.prepare(version_id, rows=AUTHORED)
    seconds = contenders.ours(prepared)
    images = sum(1 for name in contenders.queued if name.endswith("render_envelope_pages"))
    print(
        f"  {label}: authored template (the demo refund, each customer's document merged and"
        f" rendered): {AUTHORED} envelopes in {seconds:.1f} s = {AUTHORED / seconds:,.0f}"
        f" envelopes/s ({N:,} would take about {N / (AUTHORED / seconds) / 60:.0f} min); their"
        f" page images ({images} jobs) are queued for the pdf workers, not rendered here",
        flush=True,
    )


def _profile(contenders: Contenders) -> None:
    prepared = contenders.prepare()
    profiler = cProfile.Profile()
    profiler.runcall(contenders.ours, prepared)
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(30)
        print(f"--- cProfile of a bulk send, by {order}\n{out.getvalue()}", flush=True)


def _compare(label: str, app: Any, version_id: int) -> None:
    contenders = Contenders(app, version_id)
    warm = contenders.prepare(rows=200)
    contenders.ours(warm)
    contenders.baseline(*contenders.baseline_rows())
    ours_times: list[float] = []
    bare_times: list[float] = []
    uploads: list[float] = []
    for _ in range(ROUNDS):  # interleaved so drift in machine load hits both alike
        prepared = contenders.prepare()
        uploads.append(prepared.upload_seconds)
        contenders.settle()
        ours_times.append(contenders.ours(prepared))
        rows = contenders.baseline_rows()
        contenders.settle()
        bare_times.append(contenders.baseline(*rows))
    ratios = [o / b for o, b in zip(ours_times, bare_times, strict=True)]
    ratio = statistics.median(ours_times) / statistics.median(bare_times)
    verdict = "OK" if ratio <= BUDGET else "OVER BUDGET"
    print(
        f"{NAME}[{label}]: ours {statistics.median(ours_times):.2f} s / baseline"
        f" {statistics.median(bare_times):.2f} s = {ratio:.2f} (budget {BUDGET:.1f}) {verdict}",
        flush=True,
    )
    print(
        f"  {label}: {N:,} rows, uploaded-PDF template (shared document), {ROUNDS} interleaved"
        f" rounds; ours {_stats(ours_times)} s ({N / statistics.median(ours_times):,.0f}"
        f" envelopes/s), baseline {_stats(bare_times)} s, ratio {_stats(ratios)};"
        f" upload and check of the file (not timed above) {_stats(uploads)} s",
        flush=True,
    )
    _authored_rate(contenders, label)
    if os.environ.get("BENCH_PROFILE"):
        _profile(contenders)


def _dispose(app: Any) -> None:
    from portal.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _bench(label: str, uri: str) -> None:
    app, version_id = _prepare(uri)
    try:
        _compare(label, app, version_id)
    finally:
        _dispose(app)


def _bench_postgresql() -> None:
    server = start_postgres(NAME)
    if server is None:
        return
    try:
        server.execute("CREATE DATABASE portal_bench")
        _bench("postgresql", server.url("portal_bench"))
    finally:
        server.stop()


def run() -> None:
    with bench_folder() as folder:
        _bench("sqlite", f"sqlite:///{os.path.join(folder, 'bench.db')}")
        _bench_postgresql()


if __name__ == "__main__":
    run()
