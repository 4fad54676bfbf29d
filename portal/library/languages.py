"""The languages a document can be written in, and the one every template starts in.

A template version's own text (or PDF) is in ``BASE``; other languages are variants of it
(``portal.library.variants``). Adding a language is a line here, its disclosure text
(``portal.envelopes.disclosure``), its mail templates and its signer-page translations.
"""

from __future__ import annotations

BASE = "en"
# Code -> the language's name in itself (what a signer recognises) and in English (staff pages).
NAMES: dict[str, tuple[str, str]] = {
    "en": ("English", "English"),
    "es": ("Español", "Spanish"),
}
CODES = tuple(NAMES)


def label(code: str) -> str:
    """The language's English name, for staff pages and the certificate (the code if unknown)."""
    return NAMES[code][1] if code in NAMES else code


def known(code: str | None) -> str:
    """A known language code, or the base language."""
    return code if code in NAMES else BASE
