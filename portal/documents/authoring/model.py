"""What an authored document is made of: merge fields, problems, and the error that carries them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MergeKey:
    """A field staff can merge into a document, e.g. ``customer.name``."""

    key: str
    label: str
    sample: str


@dataclass(frozen=True)
class Problem:
    """Something wrong with a document body, worded for the person who wrote it."""

    line: int | None
    message: str


class AuthoringError(ValueError):
    """A document body that cannot be merged; ``problems`` says why."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(" ".join(p.message for p in self.problems) or "Invalid document.")


def sample_values(merge_keys: Iterable[MergeKey]) -> dict[str, str]:
    """``{key: sample}`` for previews."""
    return {mk.key: mk.sample for mk in merge_keys}
