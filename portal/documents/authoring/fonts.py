"""Fonts for rendered documents: DejaVu when installed, the built-in Helvetica otherwise."""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
_FONT_FILES = {
    "DejaVuSans": "DejaVuSans.ttf",
    "DejaVuSans-Bold": "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique": "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique": "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono": "DejaVuSansMono.ttf",
}
_font_lock = threading.Lock()


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str
    italic: str
    bold_italic: str
    mono: str


@functools.cache
def _fonts() -> _Fonts:
    """Register DejaVu (so Łukasiewicz and Παπαδοπούλου render); Helvetica if it is missing."""
    with _font_lock:
        available: set[str] = set()
        for name, filename in _FONT_FILES.items():
            path = os.path.join(FONT_DIR, filename)
            if name in pdfmetrics.getRegisteredFontNames():
                available.add(name)
            elif os.path.exists(path):
                try:
                    pdfmetrics.registerFont(TTFont(name, path))
                    available.add(name)
                except Exception:  # noqa: S112 - unreadable font file: fall back
                    continue
        if "DejaVuSans" not in available:
            return _Fonts(
                "Helvetica",
                "Helvetica-Bold",
                "Helvetica-Oblique",
                "Helvetica-BoldOblique",
                "Courier",
            )
        regular = "DejaVuSans"
        bold = "DejaVuSans-Bold" if "DejaVuSans-Bold" in available else regular
        italic = "DejaVuSans-Oblique" if "DejaVuSans-Oblique" in available else regular
        bold_italic = "DejaVuSans-BoldOblique" if "DejaVuSans-BoldOblique" in available else bold
        mono = "DejaVuSansMono" if "DejaVuSansMono" in available else "Courier"
        pdfmetrics.registerFontFamily(
            regular, normal=regular, bold=bold, italic=italic, boldItalic=bold_italic
        )
        return _Fonts(regular, bold, italic, bold_italic, mono)
