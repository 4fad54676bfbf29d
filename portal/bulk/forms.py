"""What the bulk send pages post, read and bounded in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping

from werkzeug.datastructures import FileStorage, MultiDict

from portal.bulk.reading import MAX_BYTES

_RANGE = re.compile(r"^\s*(\d{1,6})\s*(?:-\s*(\d{1,6})\s*)?$")
MAX_LISTED = 10_001


class FormProblem(ValueError):
    """A form that cannot be used as posted; the message says why."""


def upload(files: Mapping[str, FileStorage]) -> tuple[str, bytes]:
    """The uploaded file's name and bytes (at most one byte more than bulk send takes)."""
    chosen = files.get("file")
    if chosen is None or not chosen.filename:
        raise FormProblem("Choose the CSV or Excel file to upload.")
    try:
        return chosen.filename, chosen.stream.read(MAX_BYTES + 1)
    finally:
        chosen.close()  # a large upload is spooled to a temporary file


def row_numbers(value: str) -> list[int]:
    """``7, 12-15`` -> [7, 12, 13, 14, 15]."""
    numbers: list[int] = []
    for part in value.replace(";", ",").split(","):
        if not part.strip():
            continue
        match = _RANGE.match(part)
        if not match:
            raise FormProblem(f"“{part.strip()}” is not a row number or a range such as 12-15.")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low or high - low > MAX_LISTED or len(numbers) > MAX_LISTED:
            raise FormProblem(f"“{part.strip()}” is not a range of rows of this file.")
        numbers.extend(range(low, high + 1))
    if not numbers:
        raise FormProblem("Enter the row numbers, e.g. 7, 12-15.")
    return numbers


def mapping(form: MultiDict[str, str]) -> dict[str, str]:
    """The columns matched by hand: ``col-<column key>`` -> the file column's index."""
    return {
        key.removeprefix("col-"): value for key, value in form.items() if key.startswith("col-")
    }
