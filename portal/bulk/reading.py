"""Reading an uploaded CSV or XLSX file into rows of text, within limits, or saying why not.

Uploads are hostile input. The cheap checks come first, on the raw bytes: size, an empty
file, what kind of file it is (a ZIP that is an Excel workbook, text, or anything else), the
ZIP's entry count and declared sizes (a ZIP bomb declares what it would expand to, and
Python's reader never inflates an entry beyond its declared size). A CSV is decoded (UTF-8
with or without a BOM; Windows-1252 when the file has no UTF-8 at all; broken UTF-8 is
refused naming the row and column of the first bad byte) and read with the ``csv`` module,
which is linear and bounded by the 10 MB limit. A workbook is read by openpyxl in read-only
mode inside the sandbox (``portal.documents.sandbox``: CPU, memory and wall-clock limits),
after every XML part was checked for a DOCTYPE (entity expansion). Reading stops at the first
row past ``MAX_ROWS``. Every refusal is a ``FileProblem`` whose message a person can act on.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from portal.documents import sandbox

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 10_000
MAX_COLUMNS = 200
MAX_CELL = 10_000  # characters in one cell
# What a workbook may declare before it is opened.
MAX_ZIP_ENTRIES = 500
MAX_UNZIPPED = 100 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed, for entries over 1 MB
XLSX_CPU_SECONDS = 20
XLSX_MEMORY_MB = 768
_BOM = b"\xef\xbb\xbf"
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")
_SAVE_AS = "Save it as “CSV UTF-8” or as an Excel workbook (.xlsx) and upload it again."


class FileProblem(ValueError):
    """A file that cannot be used; the message says why and what to do."""


@dataclass
class Table:
    """A file's rows as text: the header and the data rows with their spreadsheet numbers."""

    kind: str  # csv | xlsx
    header: list[str]
    header_number: int
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    notice: str | None = None


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: how spreadsheets name columns."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def read_table(data: bytes, filename: str = "") -> Table:
    """The header and rows of an uploaded CSV or XLSX file; ``FileProblem`` when unusable."""
    if len(data) > MAX_BYTES:
        raise FileProblem(
            f"The file is {len(data) / 1_048_576:.1f} MB; bulk send takes files of up to "
            f"{MAX_BYTES // 1_048_576} MB (10,000 rows). Split it and upload each part."
        )
    if not data.strip(b" \t\r\n" + _BOM):
        raise FileProblem("The file is empty. Fill in the CSV template and upload it again.")
    if data.startswith(b"PK\x03\x04"):
        return _read_xlsx(data)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileProblem(
            f"This is an old Excel 97-2003 file (.xls), which is not read. {_SAVE_AS}"
        )
    if b"\x00" in data[:65536] or data.startswith((b"%PDF", b"\x89PNG", b"\xff\xd8")):
        raise FileProblem(
            f"“{filename or 'This file'}” is not a CSV text file nor an Excel workbook. {_SAVE_AS}"
        )
    return _read_csv(data)


# ---------------------------------------------------------------- CSV


def _decode(data: bytes) -> tuple[str, str | None]:
    """The text and a notice when it was not UTF-8."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        bad = exc.start
    if not _UTF8_SEQUENCE.search(data):
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            bad = exc.start
        else:
            return text, (
                "This file is not UTF-8: it was read as Windows-1252 (what Excel on Windows "
                "saves as plain “CSV”). Check accented names in the preview below; to be "
                "sure, save it as “CSV UTF-8” instead."
            )
    row, column = _where(data, bad)
    raise FileProblem(
        f"Row {row}, column {column}: the file has bytes that are not UTF-8 text (it looks "
        f"like a mix of encodings). {_SAVE_AS}"
    )


def _where(data: bytes, offset: int) -> tuple[int, str]:
    """The row and column letter of a byte, counting separators on its line."""
    start = data.rfind(b"\n", 0, offset) + 1
    line = data[start:offset]
    separators = max(line.count(b","), line.count(b";"))
    return data.count(b"\n", 0, offset) + 1, column_letter(separators)


def _delimiter(text: str) -> str:
    """``,`` or ``;``: whichever the first line that is not a comment has more of."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return ";" if _outside_quotes(line, ";") > _outside_quotes(line, ",") else ","
    return ","


def _outside_quotes(line: str, char: str) -> int:
    count, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == char and not quoted:
            count += 1
    return count


def _read_csv(data: bytes) -> Table:
    text, notice = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    collector = _Collector("csv", notice)
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            collector.add(number, cells)
    except csv.Error as exc:
        raise FileProblem(
            f"Row {number + 1} cannot be read as CSV ({exc}). Check its quotes. {_SAVE_AS}"
        ) from exc
    return collector.table()


# ---------------------------------------------------------------- both kinds


class _Collector:
    """Skips comment and blank rows, finds the header, keeps the rows up to the limit."""

    def __init__(self, kind: str, notice: str | None = None) -> None:
        self.kind = kind
        self.notice = notice
        self.header: list[str] | None = None
        self.header_number = 0
        self.rows: list[tuple[int, list[str]]] = []

    def add(self, number: int, cells: list[str]) -> None:
        """Take one row; ``FileProblem`` once the file has more rows than bulk send takes."""
        if len(cells) > MAX_COLUMNS and any(c.strip() for c in cells[MAX_COLUMNS:]):
            if self.header is None:
                raise FileProblem(
                    f"Row {number} has {len(cells)} columns; bulk send reads up to "
                    f"{MAX_COLUMNS}. Is this the right file?"
                )
            cells = cells[: MAX_COLUMNS + 1]  # enough to say the row is too wide
        if not any(cell.strip() for cell in cells):
            return
        if self.header is None:
            if not cells[0].lstrip().startswith("#"):  # (else: the template's explanation row)
                self.header = [" ".join(cell.split()) for cell in cells]
                self.header_number = number
            return
        if len(self.rows) >= MAX_ROWS:
            raise FileProblem(
                f"The file has more than {MAX_ROWS:,} customer rows (row {number:,} is row "
                f"{MAX_ROWS + 1:,}). Split it into files of up to {MAX_ROWS:,} rows."
            )
        for index, cell in enumerate(cells):
            if len(cell) > MAX_CELL:
                raise FileProblem(
                    f"Row {number}, column {column_letter(index)}: the cell has {len(cell):,} "
                    f"characters; a cell may have up to {MAX_CELL:,}."
                )
        self.rows.append((number, cells))

    def table(self) -> Table:
        if self.header is None:
            raise FileProblem("The file has no header row. Start from the CSV template.")
        if not self.rows:
            raise FileProblem(
                f"The file has a header (row {self.header_number}) but no customer rows "
                "after it. Add one row per customer and upload it again."
            )
        return Table(self.kind, self.header, self.header_number, self.rows, self.notice)


# ---------------------------------------------------------------- XLSX


def _check_zip(data: bytes) -> None:
    """Declared entry count and sizes, before anything is inflated."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileProblem(f"The workbook is damaged and cannot be opened. {_SAVE_AS}") from exc
    names = {entry.filename for entry in entries}
    if "xl/workbook.xml" not in names:
        raise FileProblem(f"This ZIP file is not an Excel workbook (.xlsx). {_SAVE_AS}")
    total = sum(entry.file_size for entry in entries)
    swollen = [
        e
        for e in entries
        if e.file_size > 1_048_576 and e.file_size > MAX_RATIO * max(e.compress_size, 1)
    ]
    if len(entries) > MAX_ZIP_ENTRIES or total > MAX_UNZIPPED or swollen:
        raise FileProblem(
            f"The workbook would expand to {total / 1_048_576:,.0f} MB in {len(entries):,} parts, "
            "far more than 10,000 rows need; it was not opened. Save the sheet as “CSV UTF-8” "
            "and upload that."
        )


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _parse_xlsx(data: bytes) -> Table:
    """In the sandbox: the first worksheet's rows as text (formulas as written, not run)."""
    import openpyxl

    archive = zipfile.ZipFile(io.BytesIO(data))
    for entry in archive.infolist():
        if entry.filename.endswith((".xml", ".rels")):
            with archive.open(entry) as part:
                head = part.read(4096)
            if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                raise FileProblem("The workbook contains XML entity declarations; it was not read.")
    book = openpyxl.load_workbook(
        io.BytesIO(data), read_only=True, data_only=False, keep_links=False
    )
    try:
        sheet = book.worksheets[0]
        collector = _Collector("xlsx")
        rows = sheet.iter_rows(max_col=MAX_COLUMNS + 1, values_only=True)
        for number, values in enumerate(rows, start=1):
            collector.add(number, [_cell_text(v) for v in values])
        return collector.table()
    finally:
        book.close()


def _read_xlsx(data: bytes) -> Table:
    _check_zip(data)
    limits = sandbox.configured().tighter(cpu_seconds=XLSX_CPU_SECONDS, memory_mb=XLSX_MEMORY_MB)
    try:
        return sandbox.run(_parse_xlsx, data, limits=limits)
    except FileProblem:
        raise
    except sandbox.Overrun as exc:
        raise FileProblem(
            f"Reading the workbook {exc.cost(limits)}, so it was not used. Save the sheet as "
            "“CSV UTF-8” and upload that."
        ) from exc
    except sandbox.Busy as exc:
        raise FileProblem("The portal is busy reading other files; try again in a minute.") from exc
    except Exception as exc:  # openpyxl's many ways of saying a workbook is damaged
        raise FileProblem(
            f"The workbook cannot be read ({type(exc).__name__}). {_SAVE_AS}"
        ) from exc
