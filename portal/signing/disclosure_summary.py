"""A few lines that sum up the electronic records disclosure, shown above its full text.

The disclosure itself (``portal.envelopes.disclosure``) is what the signer accepts and what the
certificate quotes; this is only how the consent page opens. It is written for one version of
the disclosure: a new version fails a test until this summary has been read against it.
"""

from __future__ import annotations

from portal.envelopes import disclosure

VERSION = "2026-12"  # the disclosure version these lines sum up

# (what it is about, the line), per language: paper copy, withdrawal, what it covers, what
# you need. ``{sender}`` is the person who sent the document.
SUMMARY = {
    "en": (
        ("Paper", "You can ask {sender} for a paper copy, at no charge."),
        ("Withdrawing", "You can withdraw before you sign: the document is then done on paper."),
        ("Covers", "This document only."),
        ("You need", "A web browser, and a PDF reader to keep your signed copy."),
    ),
    "es": (
        ("Papel", "Puede pedir a {sender} una copia en papel, sin coste."),
        ("Retirada", "Puede retirar su consentimiento antes de firmar: el documento se "
         "tramitará entonces en papel."),
        ("Alcance", "Solo este documento."),
        ("Necesita", "Un navegador web y un lector de PDF para guardar su copia firmada."),
    ),
}  # fmt: skip


def lines(locale: str, sender: str) -> list[tuple[str, str]]:
    """The summary in the language the disclosure is shown in, with the sender's name."""
    text = SUMMARY.get(disclosure.language(locale), SUMMARY["en"])
    return [(topic, line.format(sender=sender)) for topic, line in text]
