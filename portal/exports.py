"""CSV files people download and open in a spreadsheet: streamed, UTF-8 with a BOM, and safe.

* ``safe_cell`` neutralises formula injection (OWASP "CSV injection"): a spreadsheet runs a
  cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which
  some strip before looking) as a formula, so a customer called ``=HYPERLINK("http://x")``
  would become a link. Such a cell is written with a leading apostrophe, which spreadsheets
  show as text and hide. Every cell of every export goes through it.
* ``csv_stream`` turns rows into encoded chunks: a BOM first (so Excel reads UTF-8), then a
  chunk per batch of lines, never the whole file in memory.
* ``csv_stream_recorded`` is ``csv_stream`` that counts and hashes what it sends and says so
  once when the stream ends (its export's audit event), whether it ended or was stopped.
* ``csv_response`` sends such a stream as a download.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, cast

from flask import Response, stream_with_context

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LINES_PER_CHUNK = 500
CHUNK_CHARS = 256 * 1024  # (csv_stream_batches)


def safe_cell(value: Any) -> str:
    """The text of one cell, with a leading apostrophe when a spreadsheet would run it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_stream(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """``header`` and ``rows`` as UTF-8 CSV (CRLF line ends) with a BOM, in chunks."""
    return csv_stream_prepared(header, ([safe_cell(cell) for cell in row] for row in rows))


def csv_stream_prepared(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """``csv_stream`` for rows whose cells the caller already made safe: every text cell a
    person could have typed through ``safe_cell`` (or the same check written out, for exports
    of millions of rows), the others numbers, times or hashes. Written as they are."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write(BOM)
    writer.writerow([safe_cell(cell) for cell in header])
    lines = iter(rows)
    while True:
        chunk = list(islice(lines, LINES_PER_CHUNK))
        if not chunk:
            break
        writer.writerows(chunk)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    remaining = buffer.getvalue()  # the header alone, when there were no rows
    if remaining:
        yield remaining.encode()


def csv_line(row: Sequence[Any]) -> str:
    """One row as ``csv.writer`` writes it (CRLF at the end): for a caller that writes its
    own lines (``csv_stream_batches``) and meets a row it does not quote itself."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(row)
    return buffer.getvalue()


def csv_stream_batches(
    header: Sequence[str], batches: Iterable[Sequence[Sequence[Any] | str]]
) -> Iterator[bytes]:
    """``csv_stream_prepared`` for rows that come in lists (a batch read at a time): one
    writer call per batch, a chunk once ``CHUNK_CHARS`` are written (for exports of millions
    of rows: no call per row). A batch may also be a list of lines already written (str,
    each a whole line as ``csv_line`` writes it): they are written as they are."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write(BOM)
    writer.writerow([safe_cell(cell) for cell in header])
    for batch in batches:
        if batch and isinstance(batch[0], str):
            buffer.write("".join(cast(Sequence[str], batch)))
        else:
            writer.writerows(batch)
        del batch  # (the next one is made without this one)
        if buffer.tell() >= CHUNK_CHARS:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    remaining = buffer.getvalue()
    if remaining:
        yield remaining.encode()


@dataclass
class Written:
    """What a stream wrote: rows, bytes and the file's SHA-256 so far."""

    rows: int = 0
    size: int = 0
    digest: Any = None

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256()

    def take(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        self.digest.update(chunk)
        return chunk


def csv_stream_recorded(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    finished: Callable[[Written, bool], None],
) -> Iterator[bytes]:
    """``csv_stream``, counting the rows and hashing the bytes sent; ``finished(written,
    complete)`` is called once when the stream ends (``complete`` False when the person
    stopped the download midway)."""
    written = Written()
    complete = False

    def counted() -> Iterator[Sequence[Any]]:
        for row in rows:
            written.rows += 1
            yield row

    try:
        for chunk in csv_stream(header, counted()):
            yield written.take(chunk)
        complete = True
    finally:
        finished(written, complete)


def csv_response(chunks: Iterator[bytes], filename: str) -> Response:
    """A streamed CSV download (the request context stays while it streams)."""
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    safe = filename.replace('"', "").replace("\\", "")
    response.headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    response.headers["Cache-Control"] = "no-store"
    return response
