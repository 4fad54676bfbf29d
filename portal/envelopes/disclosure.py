"""The electronic records and signature disclosure (ESIGN / UETA), versioned.

A new version requires fresh consent: recipients who accepted an older one are asked again.
"""

from __future__ import annotations

VERSION = "2026-11"

# (heading, text) pairs, English and Spanish. Every required element has its own paragraph.
TEXT = {
    "en": (
        ("Electronic records and signatures",
         "{org} would like to give you this document and receive your signature electronically. "
         "Please read this before you continue."),
        ("Your right to paper",
         "You can ask for a paper copy of any document you sign here, at no charge, by "
         "replying to the email that brought you here or contacting {sender}."),
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
         "{org} desea entregarle este documento y recibir su firma de forma electrónica. "
         "Léalo antes de continuar."),
        ("Su derecho al papel",
         "Puede pedir sin coste una copia en papel de cualquier documento que firme aquí, "
         "respondiendo al correo que le trajo aquí o contactando con {sender}."),
        ("Retirar el consentimiento",
         "Puede retirar su consentimiento al uso de documentos electrónicos en cualquier momento "
         "antes de firmar, rechazándolo en la página siguiente o diciéndoselo a {sender}. La única "
         "consecuencia es que este documento se tramitará en papel, lo que puede tardar más."),
        ("Alcance del consentimiento",
         "Este consentimiento cubre solo este documento y ninguna otra operación."),
        ("Mantener sus datos al día",
         "Si cambia su dirección de correo, comuníqueselo a {sender} para que reciba la "
         "copia firmada."),
        ("Qué necesita",
         "Un navegador web actual para leer y firmar, y un lector de PDF para abrir y guardar la "
         "copia firmada que le enviaremos. Puede descargarla y conservarla."),
    ),
}  # fmt: skip


def paragraphs(locale: str, org: str, sender: str) -> list[tuple[str, str]]:
    """The disclosure in the recipient's language, with names filled in."""
    text = TEXT.get(locale, TEXT["en"])
    return [(head, body.format(org=org, sender=sender)) for head, body in text]
