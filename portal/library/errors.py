"""The one error the template library's verbs raise."""

from __future__ import annotations


class LibraryError(ValueError):
    """A change that cannot be made; the message says why and what to do."""
