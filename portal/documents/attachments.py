"""Check a file a signer attaches (a photo or a PDF) before it is stored.

A signer's upload is read by the same libraries as everything else, so it is checked in the
sandbox: a PDF must pass the upload checks (``inspect_pdf``: no scripts, no active content, no
bombs), a JPEG or PNG must decode completely within a pixel budget. ``check_attachment``
answers with a problem code the signing pages word in the signer's language, or None.
"""

from __future__ import annotations

import io
import logging
import warnings

from PIL import Image, UnidentifiedImageError

from portal.documents import sandbox
from portal.documents.inspect import ActiveContent, PdfProblem, check_bytes, parse_pdf

log = logging.getLogger(__name__)

MAX_IMAGE_SIDE = 12_000
MAX_IMAGE_PIXELS = 60_000_000  # a 60-megapixel photo; decompressing it takes ~180 MB
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG"}

# Problem codes: "damaged", "active_content", "too_complex", "busy".


def inspect_attachment(data: bytes, kind: str) -> str | None:
    """The problem with an attachment of type ``kind``, or None (run in the sandbox)."""
    if kind == "application/pdf":
        try:
            check_bytes(data)
            parse_pdf(data)
        except ActiveContent as exc:
            log.warning("Signer attachment refused: %s", exc)
            return "active_content"
        except PdfProblem as exc:
            log.warning("Signer attachment refused: %s", exc)
            return "damaged"
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format != _FORMATS.get(kind):
                    return "damaged"
                width, height = image.size
                if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
                    return "too_complex"
                image.load()  # every pixel decodes: a cut-off or broken file fails here
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return "too_complex"
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return "damaged"
    return None


def check_attachment(data: bytes, kind: str) -> str | None:
    """``inspect_attachment`` in the sandbox; an overrun is "too_complex"."""
    try:
        return sandbox.run(inspect_attachment, data, kind)
    except sandbox.Overrun:
        return "too_complex"
    except sandbox.Busy:
        return "busy"
