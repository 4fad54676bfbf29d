"""The electronic records and signature disclosure (ESIGN / UETA), versioned.

A new version requires fresh consent: recipients who accepted an older one are asked again.
"""

from __future__ import annotations

VERSION = "2026-12"  # 2026-12: paper copies through the sender (no reply to a no-reply address)

# (heading, text) pairs, English and Spanish. Every required element has its own paragraph.
# The Spanish text is written for a reader in Spain or Latin America: formal "usted", and the
# same terms as the signer pages and emails ("documento", "firmar", "copia firmada").
TEXT = {
    "en": (
        ("Electronic records and signatures",
         "{org} would like to give you this document and receive your signature electronically. "
         "Please read this before you continue."),
        ("Your right to paper",
         "You can ask {sender} for a paper copy of any document you sign here, at no charge."),
        ("Withdrawing consent",
         "You can withdraw your consent to use electronic records at any time before you sign, "
         "by declining on the next page or telling {sender}. The only consequence is that this "
         "document will then be handled on paper, which may take longer."),
        ("What this consent covers",
         "This consent covers this document only. It does not cover any other transaction."),
        ("Keeping your details up to date",
         "If your email address changes, tell {sender} so that the signed copy reaches you."),
        ("What you need",
         "A current web browser to read and sign, and a PDF reader to open and keep the signed "
         "copy we send you. You can download and keep the signed copy."),
    ),
    "es": (
        ("Documentos y firmas electrónicos",
         "{org} desea facilitarle este documento y recibir su firma por medios electrónicos. "
         "Le rogamos que lea esta información antes de continuar."),
        ("Derecho a una copia en papel",
         "Puede solicitar a {sender} una copia en papel de cualquier documento que firme aquí, "
         "sin ningún coste."),
        ("Retirada del consentimiento",
         "Puede retirar su consentimiento al uso de documentos electrónicos en cualquier momento "
         "antes de firmar, rechazando el documento en la página siguiente o comunicándoselo a "
         "{sender}. La única consecuencia es que el documento se tramitará en papel, lo que "
         "puede llevar más tiempo."),
        ("Alcance del consentimiento",
         "Este consentimiento se refiere únicamente a este documento y no se aplica a ninguna "
         "otra operación."),
        ("Actualización de sus datos",
         "Si cambia su dirección de correo electrónico, comuníqueselo a {sender} para que la "
         "copia firmada le llegue correctamente."),
        ("Requisitos técnicos",
         "Necesitará un navegador web actualizado para leer y firmar el documento, y un lector "
         "de PDF para abrir y conservar la copia firmada que le enviaremos. Puede descargar la "
         "copia firmada y guardarla."),
    ),
}  # fmt: skip


def language(locale: str | None) -> str:
    """The language the disclosure is shown in to a recipient of this locale."""
    return locale if locale in TEXT else "en"


def paragraphs(locale: str, org: str, sender: str) -> list[tuple[str, str]]:
    """The disclosure in the recipient's language, with names filled in."""
    text = TEXT[language(locale)]
    return [(head, body.format(org=org, sender=sender)) for head, body in text]


def full_text(locale: str, org: str, sender: str) -> str:
    """The whole disclosure as shown in that language: headings and paragraphs, blank-line
    separated (the certificate quotes it)."""
    return "\n\n".join(f"{head}\n{body}" for head, body in paragraphs(locale, org, sender))
