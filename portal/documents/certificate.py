"""The certificate of completion and the audit report, rendered as PDF pages.

One renderer makes three things from the same evidence (COMPLIANCE.md section 2):

* the pages appended to the sealed PDF (``sealed_sha256`` is None: a file cannot contain
  its own hash);
* the separately downloadable audit report, which also states the sealed file's SHA-256;
* an interim report for an envelope still in progress (``interim=True``), labelled as such on
  every page.

The caller gathers the evidence into the frozen dataclasses below; nothing here touches the
database. Caller-supplied text is drawn as plain strings (wrapped here, never parsed as
markup) or, in the few Paragraphs left, escaped for reportlab's markup, so a name such as
``<b>Eve</b>`` is printed literally. All times are printed in UTC.

A certificate is rendered for every sealed envelope, so most of it is drawn by a few small
flowables of this module (text wrapped in advance exactly as a Paragraph would wrap it, one PDF
text object per block) rather than Paragraphs in nested Tables: the same look, several times
cheaper to lay out and draw. Drawn signatures are decoded once and embedded once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import math
import os
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from PIL import Image as PILImage
from PIL import ImageChops
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfdoc import PDFImageXObject
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from portal.clock import as_utc
from portal.text import printable

from .authoring.fonts import FONT_DIR, _Fonts, _fonts
from .authoring.styles import _CODE_FILL, _HEADER_FILL, _HEADING_INK, _INK, _MUTED, _RULE

__all__ = [
    "AttachmentEvidence",
    "CertificateData",
    "PartyEvidence",
    "RecipientEvidence",
    "TimelineEntry",
    "render_certificate",
]


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class PartyEvidence:
    """The sender (the agent who sent the envelope). For an envelope an API key sent: the
    key's team, no address of its own, and ``via`` names the key and the admin who made it."""

    name: str
    email: str
    ip: str | None
    via: str | None = None


@dataclass(frozen=True)
class RecipientEvidence:
    name: str
    email: str
    role_name: str  # e.g. "Customer"
    kind: str  # signer | approver | cc
    order: int  # routing order
    status: str  # signed | approved | declined | copied | sent | viewed | waiting
    auth_method: str  # link | email_otp | access_code
    auth_result: str  # human text, e.g. "Email code verified"
    adoption: str | None  # drawn | typed | None
    signature_png: bytes | None  # drawn signature (PNG, transparent background)
    typed_signature: str | None  # typed signature text
    ip: str | None
    user_agent: str | None
    sent_at: datetime | None
    viewed_at: datetime | None
    consented_at: datetime | None
    consent_version: str | None
    authenticated_at: datetime | None
    finished_at: datetime | None
    decline_reason: str | None
    comment: str | None
    consent_language: str | None = None  # the language of the disclosure text accepted


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    event: str  # human label, e.g. "Signed", "Email delivered"
    actor: str
    ip: str | None
    detail: str = ""


@dataclass(frozen=True)
class AttachmentEvidence:
    field_label: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class CertificateData:
    envelope_id: str  # public id, e.g. "ENV-7Q2K9X"
    title: str
    page_count: int
    template_name: str
    template_version: int
    status: str  # completed | declined | voided | expired | sent
    created_at: datetime
    completed_at: datetime | None
    original_sha256: str
    sealed_sha256: str | None  # only in the separate audit report
    sender: PartyEvidence
    recipients: Sequence[RecipientEvidence]
    consent_text: str  # the text of the disclosure version accepted
    consent_version: str
    cc_deliveries: Sequence[tuple[str, str, datetime | None]]  # (name, email, delivered at)
    attachments: Sequence[AttachmentEvidence]
    timeline: Sequence[TimelineEntry]
    generated_at: datetime
    organisation: str  # shown in the page header
    interim: bool = False
    document_language: str = ""  # e.g. "Spanish"
    # The full disclosure as shown, once per language shown: (language, text).
    consent_texts: Sequence[tuple[str, str]] = ()


# --------------------------------------------------------------------------- wording

INTERIM_LABEL = "Interim report — envelope not completed"
FOOTER_PREFIX = "Certificate of completion"
NOT_RECORDED = "Not recorded"
NO_TIME = "—"

_ENVELOPE_STATUS = {
    "completed": "Completed",
    "declined": "Declined",
    "voided": "Voided",
    "expired": "Expired",
    "sent": "In progress",
}
_KIND = {"signer": "Signer", "approver": "Approver", "cc": "Copy recipient (cc)"}
_RECIPIENT_STATUS = {
    "signed": "Signed",
    "approved": "Approved",
    "declined": "Declined",
    "copied": "Copy delivered",
    "sent": "Sent, not opened yet",
    "viewed": "Opened, not finished yet",
    "waiting": "Waiting for an earlier routing step",
}
_AUTH_METHOD = {
    "link": "Emailed signing link",
    "email_otp": "One-time code by email",
    "access_code": "Access code",
}
_ADOPTION = {"drawn": "Drawn by hand", "typed": "Typed name"}
_FINISH_LABEL = {"signer": "Signed", "approver": "Approved", "cc": "Delivered"}

# --------------------------------------------------------------------------- layout

PAGE_SIZE = A4
MARGIN_X = 18 * mm
HEADER_ROOM = 22 * mm  # from the top edge to the frame
INTERIM_ROOM = 10 * mm  # extra room under the header for the interim band
FOOTER_ROOM = 18 * mm  # from the bottom edge to the frame
SIGNATURE_BOX = (180.0, 60.0)  # width, height in points

_OK = colors.HexColor("#1d6b35")
_BAD = colors.HexColor("#a4221b")
_PENDING = colors.HexColor("#8a5a00")
_INTERIM_FILL = colors.HexColor("#fff1cc")
_INTERIM_RULE = colors.HexColor("#d9a21b")
_INTERIM_INK = colors.HexColor("#6b4500")
_SIGNATURE_INK = colors.HexColor("#17306b")
_STRIPE = colors.HexColor("#f7f8fa")
_WHITE = colors.white

# Control characters and code points reportlab cannot encode; whitespace is handled apart.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

# How far Paragraph lets a line's spaces shrink to fit one more word (matched by _wrap).
_SPACE_SHRINKAGE: float = rl_config.spaceShrinkage

_SERIF_ITALIC = ("DejaVuSerif-Italic", "DejaVuSerif-Italic.ttf")
_font_lock = threading.Lock()


@functools.cache
def _signature_font() -> str:
    """A serif italic for typed signatures (looks written); the sans italic otherwise."""
    fonts = _fonts()
    name, filename = _SERIF_ITALIC
    with _font_lock:
        if name in pdfmetrics.getRegisteredFontNames():
            return name
        path = os.path.join(FONT_DIR, filename)
        if fonts.regular != "Helvetica" and os.path.exists(path):
            try:
                pdfmetrics.registerFont(TTFont(name, path))
            except Exception:  # noqa: S110 - unreadable font file: fall back
                pass
            else:
                return name
    return fonts.italic


# --------------------------------------------------------------------------- text helpers


def _clean(text: object) -> str:
    """One line of plain text: no control characters, whitespace collapsed."""
    return " ".join(_CONTROL_RE.sub("", str(text)).split())


def _esc(text: object) -> str:
    """One line of caller-supplied text as Paragraph markup: never markup itself."""
    return _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_lines(text: str) -> str:
    """Multi-line caller text as Paragraph markup: line breaks kept, nothing else."""
    lines = (_esc(line) for line in text.replace("\r\n", "\n").split("\n"))
    return "<br/>".join(line for line in lines if line)


def _hex(colour: colors.Color) -> str:
    """``#rrggbb`` for a ``<font color>`` attribute."""
    return "#" + colour.hexval()[2:]


def format_utc(value: datetime | None) -> str:
    """``2026-11-26 14:03:22 UTC``; naive datetimes are taken as UTC; "—" for none."""
    if value is None:
        return NO_TIME
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(size: int) -> str:
    """``512 bytes``, ``180.0 KB (184,320 bytes)``, ``2.5 MB (2,621,440 bytes)``."""
    if size < 1024:
        return f"{size:,} bytes"
    unit, factor = ("MB", 1024 * 1024) if size >= 1024 * 1024 else ("KB", 1024)
    return f"{size / factor:.1f} {unit} ({size:,} bytes)"


def _fit(text: str, font: str, size: float, width: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` (for canvas strings, not Paragraphs)."""
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


# Where a word too long for its line may break: before "@" and after ".", "-", "_", "/" or "+"
# (an email address or a URL breaks between its parts, never letter by letter).
_WORD_BREAKS = re.compile(r"(?=@)|(?<=[./_+-])")


def _split_chars(word: str, width: float, font: str, size: float) -> list[str]:
    """A piece with no break point that is wider than a line, cut into line-wide parts."""
    measure = pdfmetrics.stringWidth
    parts: list[str] = []
    current, used = "", 0.0
    for char in word:
        char_width = measure(char, font, size)
        if current and used + char_width > width:
            parts.append(current)
            current, used = "", 0.0
        current += char
        used += char_width
    parts.append(current)
    return parts


def _split_word(word: str, used: float, width: float, font: str, size: float) -> list[str]:
    """A word wider than a line cut at its break points (``_WORD_BREAKS``): the first part
    fills the current line (``used`` points of it are taken; empty when not even the first
    piece fits), each further part a line. Only a piece wider than a whole line is cut
    between characters."""
    measure = pdfmetrics.stringWidth
    pieces = [
        part
        for piece in _WORD_BREAKS.split(word)
        if piece
        for part in (
            _split_chars(piece, width, font, size)
            if measure(piece, font, size) > width
            else [piece]
        )
    ]
    parts: list[str] = []
    current = ""
    for piece in pieces:
        piece_width = measure(piece, font, size)
        if used + piece_width > width:
            parts.append(current)
            current, used = "", 0.0
        current += piece
        used += piece_width
    parts.append(current)
    return parts


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """One clean line of text broken into lines of at most ``width`` points.

    The same breaks as reportlab's Paragraph makes for plain text in one style (greedy at
    spaces, its small space shrinkage allowed), so plain strings drawn line by line look like
    the Paragraphs they replace; but a word longer than a line (an email address) breaks at
    sensible points (``_split_word``), where Paragraph would cut it letter by letter.
    """
    if not text:
        return []
    measure = pdfmetrics.stringWidth
    if measure(text, font, size) <= width:
        return [text]
    space = measure(" ", font, size)
    shrink = _SPACE_SHRINKAGE * space
    lines: list[str] = []
    line: list[str] = []
    used = -space  # no space before the first word of a line

    def add(word: str, word_width: float) -> None:
        nonlocal line, used
        if used + space + word_width <= width + shrink * len(line) or not line:
            line.append(word)
            used += space + word_width
        else:
            lines.append(" ".join(line))
            line = [word]
            used = word_width

    for word in text.split(" "):
        word_width = measure(word, font, size)
        if used + space + word_width > width + shrink * len(line) and word_width > width:
            first, *rest = _split_word(word, used + space, width, font, size)
            if first:
                line.append(first)
            if line:
                lines.append(" ".join(line))
            line, used = [], -space
            for part in rest:
                add(part, measure(part, font, size))
        else:
            add(word, word_width)
    if line:
        lines.append(" ".join(line))
    return lines


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class _Ink:
    """Font, size, leading and colour of plain text drawn as strings (not as Paragraphs)."""

    font: str
    size: float
    leading: float
    color: colors.Color

    @classmethod
    def of(cls, style: ParagraphStyle) -> _Ink:
        return cls(style.fontName, style.fontSize, style.leading, style.textColor)

    def muted(self) -> _Ink:
        return dataclasses.replace(self, color=_MUTED)

    def width(self, text: str) -> float:
        return float(pdfmetrics.stringWidth(text, self.font, self.size))

    def lines(self, text: str, width: float) -> list[str]:
        """Plain text wrapped to ``width``; ``\\n`` breaks kept, empty lines dropped."""
        out: list[str] = []
        for part in text.split("\n"):
            out += _wrap(_clean(part), self.font, self.size, width)
        return out


class _Text(NamedTuple):
    """Plain text in a particular ink (a table cell's own font or colour)."""

    text: str
    ink: _Ink


# A label / value or table cell: plain text in the table's ink, text in its own ink, or
# flowables (stacked in the cell).
_Value = str | _Text | list[Flowable]


class _Look:
    """Paragraph styles and inks for the certificate (built once per font set)."""

    def __init__(self, fonts: _Fonts) -> None:
        self.fonts = fonts
        base = ParagraphStyle(
            "cert-body",
            fontName=fonts.regular,
            fontSize=9,
            leading=12.5,
            textColor=_INK,
            spaceAfter=4,
        )
        self.body = base
        self.note = ParagraphStyle(
            "cert-note", parent=base, fontSize=8, leading=11, textColor=_MUTED
        )
        self.tight_note = ParagraphStyle("cert-tight-note", parent=self.note, spaceAfter=0)
        self.title = ParagraphStyle(
            "cert-title",
            parent=base,
            fontName=fonts.bold,
            fontSize=19,
            leading=24,
            textColor=_HEADING_INK,
            spaceAfter=3,
        )
        self.subtitle = ParagraphStyle(
            "cert-subtitle", parent=base, fontSize=11.5, leading=15, spaceAfter=10
        )
        self.h2 = ParagraphStyle(
            "cert-h2",
            parent=base,
            fontName=fonts.bold,
            fontSize=11.5,
            leading=15,
            textColor=_HEADING_INK,
            spaceBefore=12,
            spaceAfter=5,
        )
        self.cell = ParagraphStyle("cert-cell", parent=base, fontSize=8.5, leading=11, spaceAfter=0)
        self.label = ParagraphStyle("cert-label", parent=self.cell, textColor=_MUTED)
        self.th = ParagraphStyle("cert-th", parent=self.cell, fontName=fonts.bold, textColor=_INK)
        self.small = ParagraphStyle("cert-small", parent=self.cell, fontSize=7.5, leading=9.5)
        self.small_th = ParagraphStyle("cert-small-th", parent=self.small, fontName=fonts.bold)
        self.mono = ParagraphStyle(
            "cert-mono", parent=self.cell, fontName=fonts.mono, fontSize=8, leading=10.5
        )
        self.small_mono = ParagraphStyle(
            "cert-small-mono", parent=self.small, fontName=fonts.mono, fontSize=7.5, leading=9.5
        )
        self.card_title = ParagraphStyle(
            "cert-card-title", parent=self.cell, fontName=fonts.bold, fontSize=10, leading=13
        )
        self.card_status = ParagraphStyle(
            "cert-card-status", parent=self.card_title, alignment=TA_RIGHT
        )
        self.caption = ParagraphStyle(
            "cert-caption", parent=self.small, textColor=_MUTED, alignment=TA_CENTER
        )
        self.placeholder = ParagraphStyle(
            "cert-placeholder",
            parent=self.cell,
            fontName=fonts.italic,
            textColor=_MUTED,
            alignment=TA_CENTER,
        )
        self.quote = ParagraphStyle(
            "cert-quote",
            parent=base,
            fontSize=8.5,
            leading=12,
            backColor=_CODE_FILL,
            borderPadding=(5, 7, 5, 7),
            leftIndent=7,
            rightIndent=7,
            spaceBefore=2,
            spaceAfter=9,
        )
        self.signature_font = _signature_font()
        # The same looks for text drawn as plain strings.
        ink = _Ink.of
        self.i_title = ink(self.title)
        self.i_h2 = ink(self.h2)
        self.i_note = ink(self.note)
        self.i_cell = ink(self.cell)
        self.i_bold = dataclasses.replace(self.i_cell, font=fonts.bold)
        self.i_label = ink(self.label)  # also "Not recorded" and other placeholders
        self.i_th = ink(self.th)
        self.i_small = ink(self.small)
        self.i_small_th = ink(self.small_th)
        self.i_mono = ink(self.mono)
        self.i_small_mono = ink(self.small_mono)
        self.i_card_title = ink(self.card_title)
        self.i_card_role = _Ink(fonts.regular, 10, 13, _MUTED)
        self.i_card_status = ink(self.card_status)
        self.i_caption = ink(self.caption)
        self.i_placeholder = ink(self.placeholder)


@functools.cache
def _look() -> _Look:
    return _Look(_fonts())


def _or(text: str | None, missing: str = NOT_RECORDED) -> _Value:
    """Caller text as one clean line, or a muted placeholder when there is none."""
    cleaned = _clean(text or "")
    return cleaned if cleaned else _Text(missing, _look().i_label)


def _plain(text: str | None) -> str:
    """Caller text for a table cell: its line breaks kept, "—" when there is none."""
    lines = (_clean(line) for line in (text or "").replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line) or NO_TIME


def _hash_lines(value: str, ink: _Ink, width: float) -> list[str]:
    """A hex digest broken into equal lines that fit ``width`` (in a monospaced ink)."""
    digest = _clean(value).replace(" ", "")
    per_char = ink.width("0")
    per_line = max(8, int(width // per_char))
    lines = math.ceil(len(digest) / per_line)
    chunk = math.ceil(len(digest) / lines) if lines else 1
    return [digest[i : i + chunk] for i in range(0, len(digest), chunk)]


# --------------------------------------------------------------------------- drawn blocks


class _Writer:
    """Plain text into one PDF text object, font and colour set only when they change."""

    def __init__(self, canvas: Canvas) -> None:
        self._canvas = canvas
        self._text: Any = None
        self._ink: _Ink | None = None

    def put(self, text: str, ink: _Ink, x: float | None, baseline: float = 0.0) -> None:
        """``text`` from (x, baseline), or straight after the text before when x is None."""
        if self._text is None:
            self._text = self._canvas.beginText()
        if ink is not self._ink:
            self._text.setFont(ink.font, ink.size, ink.leading)
            self._text.setFillColor(ink.color)
            self._ink = ink
        if x is not None:
            self._text.setTextOrigin(x, baseline)
        self._text.textOut(text)

    def lines(self, lines: Sequence[str], ink: _Ink, x: float, top: float) -> None:
        """``lines`` from ``top`` down, the first baseline ``ink.size`` under it."""
        baseline = top - ink.size
        for line in lines:
            self.put(line, ink, x, baseline)
            baseline -= ink.leading

    def flush(self) -> None:
        """Draw what was written so far (the PDF's reading order is the order drawn)."""
        if self._text is not None:
            self._canvas.drawText(self._text)
            self._text, self._ink = None, None


class _Sketch(Flowable):
    """A block laid out in advance and drawn straight onto the canvas.

    Text is pre-wrapped plain strings (never parsed as markup, so nothing needs escaping);
    all of it goes into one PDF text object. Far cheaper to lay out and draw than Paragraphs
    in nested tables, which matters for a report with a few hundred short texts. Positions
    are from the block's top-left corner, y growing downwards. Not splittable: used for
    blocks that belong together (a heading, one side of a recipient card).
    """

    def __init__(
        self, width: float, *, space_before: float = 0.0, space_after: float = 0.0
    ) -> None:
        super().__init__()
        self.width = width
        self.height = 0.0
        self.spaceBefore = space_before
        self.spaceAfter = space_after
        # x (None: straight after the text before), baseline, text, ink
        self._texts: list[tuple[float | None, float, str, _Ink]] = []
        self._boxes: list[tuple[float, float, float, float]] = []  # x, top, width, height
        self._pictures: list[tuple[_Picture, float, float, float, float]] = []

    def text(
        self,
        lines: Sequence[str],
        ink: _Ink,
        x: float,
        top: float,
        room: float = 0.0,
        align: int = TA_LEFT,
    ) -> float:
        """Draw ``lines`` from ``top`` down (aligned within ``room``); answer their bottom."""
        baseline = top + ink.size
        for line in lines:
            left = x
            if align != TA_LEFT:
                spare = room - ink.width(line)
                left += spare / 2 if align == TA_CENTER else spare
            self._texts.append((left, baseline, line, ink))
            baseline += ink.leading
        bottom = top + len(lines) * ink.leading
        self.height = max(self.height, bottom)
        return bottom

    def run(self, text: str, ink: _Ink) -> None:
        """More text on the last line, straight after it (as a Paragraph sets a change of font)."""
        self._texts.append((None, self._texts[-1][1], text, ink))

    def box(self, x: float, top: float, width: float, height: float) -> None:
        """A white box with a thin rule around it."""
        self._boxes.append((x, top, width, height))
        self.height = max(self.height, top + height)

    def picture(self, picture: _Picture, x: float, top: float, width: float, height: float) -> None:
        self._pictures.append((picture, x, top, width, height))
        self.height = max(self.height, top + height)

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        return min(self.width, availWidth), self.height

    def draw(self) -> None:
        canvas = self.canv
        top = self.height
        if self._boxes:
            canvas.setFillColor(_WHITE)
            canvas.setStrokeColor(_RULE)
            canvas.setLineWidth(0.5)
            for x, y, width, height in self._boxes:
                canvas.rect(x, top - y - height, width, height, stroke=1, fill=1)
        for picture, x, y, width, height in self._pictures:
            _draw_picture(canvas, picture, x, top - y - height, width, height)
        writer = _Writer(canvas)
        for left, baseline, line, ink in self._texts:
            writer.put(line, ink, left, top - baseline)
        writer.flush()


def _lines(text: str, ink: _Ink, width: float, **space: float) -> _Sketch:
    """Plain text wrapped to ``width`` as a block (headings, notes)."""
    sketch = _Sketch(width, **space)
    sketch.text(ink.lines(text, width), ink, 0, 0)
    return sketch


def _heading(text: str, width: float) -> _Sketch:
    look = _look()
    return _lines(
        text, look.i_h2, width, space_before=look.h2.spaceBefore, space_after=look.h2.spaceAfter
    )


def _note(text: str, width: float) -> _Sketch:
    look = _look()
    return _lines(text, look.i_note, width, space_after=look.note.spaceAfter)


# --------------------------------------------------------------------------- signature images

# Drawn signatures larger than this (pixels) are reduced once before they are embedded: four
# times the printed size is plenty for print and keeps decoding and compression cheap.
_PICTURE_LIMIT = (int(SIGNATURE_BOX[0] * 4), int(SIGNATURE_BOX[1] * 4))
_PICTURE_ZLIB_LEVEL = 3  # several times faster than the default 6 on a mostly blank image


@dataclass(frozen=True)
class _Picture:
    """A signature image ready to embed: compressed samples and, if any, alpha channel."""

    key: str  # names the image XObject (the same PNG is embedded once per document)
    width: int  # pixels
    height: int
    gray: bool  # DeviceGray samples (a black or grey ink), else DeviceRGB
    samples: bytes  # zlib
    alpha: bytes | None  # zlib, DeviceGray soft mask


def _picture(png: bytes) -> _Picture | None:
    """Decode a PNG once with Pillow, or None when it cannot be read.

    Does what reportlab's ``drawImage(..., mask="auto")`` does (colour samples plus the alpha
    channel as a soft mask), without its second colour conversion and its digest of the raw
    samples; an ink without colour is stored as grey (a third of the data) and the samples are
    compressed at a faster zlib level (a signature is mostly blank: the result is still small).
    """
    try:
        image: PILImage.Image = PILImage.open(io.BytesIO(png))
        image.load()
        transparent = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            "transparency" in image.info
        )
        mode = "RGBA" if transparent else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        if image.width > _PICTURE_LIMIT[0] or image.height > _PICTURE_LIMIT[1]:
            image.thumbnail(_PICTURE_LIMIT, PILImage.Resampling.LANCZOS)
        bands = image.split()
    except Exception:
        return None
    if image.width < 1 or image.height < 1:
        return None
    red, green, blue = bands[:3]
    alpha = None
    if transparent and bands[3].getextrema() != (255, 255):
        alpha = zlib.compress(bands[3].tobytes(), _PICTURE_ZLIB_LEVEL)
    gray = (
        ImageChops.difference(red, green).getbbox() is None
        and ImageChops.difference(red, blue).getbbox() is None
    )
    colour = image.convert("RGB") if transparent and not gray else image
    samples = zlib.compress((red if gray else colour).tobytes(), _PICTURE_ZLIB_LEVEL)
    key = hashlib.sha256(png).hexdigest()[:32]
    return _Picture(key, image.width, image.height, gray, samples, alpha)


def _image_xobject(name: str, width: int, height: int, gray: bool, data: bytes) -> Any:
    xobject = PDFImageXObject(name)
    xobject.width = width
    xobject.height = height
    xobject.bitsPerComponent = 8
    xobject.colorSpace = "DeviceGray" if gray else "DeviceRGB"
    xobject._filters = ("FlateDecode",)
    xobject.streamContent = data
    xobject.mask = None
    return xobject


def _draw_picture(
    canvas: Canvas, picture: _Picture, x: float, y: float, width: float, height: float
) -> None:
    """What ``canvas.drawImage`` does, with samples that are already compressed."""
    doc = canvas._doc
    name = f"sig{picture.key}"
    registered = doc.getXObjectName(name)
    if registered not in doc.idToObject:
        xobject = _image_xobject(name, picture.width, picture.height, picture.gray, picture.samples)
        doc.Reference(xobject, registered)
        doc.addForm(name, xobject)
        if picture.alpha is not None:
            mask = _image_xobject(f"{name}m", picture.width, picture.height, True, picture.alpha)
            mask._decode = [0, 1]
            xobject.smask = doc.Reference(mask, doc.getXObjectName(mask.name))
    canvas._currentPageHasImages = 1
    canvas.saveState()
    canvas.translate(x, y)
    canvas.scale(width, height)
    canvas._code.append(f"/{registered} Do")
    canvas.restoreState()
    canvas._formsinuse.append(name)


# --------------------------------------------------------------------------- page furniture


class _NumberedCanvas(Canvas):
    """Keeps each finished page until the end, then stamps "page N of M" on all of them."""

    def __init__(self, *args: Any, footer_label: str, footer_font: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._footer_label = footer_label
        self._footer_font = footer_font
        self._held: list[dict[str, Any]] = []

    def showPage(self) -> None:  # reportlab's name
        self._held.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._held)
        for number, state in enumerate(self._held, start=1):
            self.__dict__.update(state)
            self._draw_footer(number, total)
            Canvas.showPage(self)
        Canvas.save(self)

    def _draw_footer(self, number: int, total: int) -> None:
        width, _ = self._pagesize
        y = FOOTER_ROOM - 9 * mm
        self.saveState()
        self.setStrokeColor(_RULE)
        self.setLineWidth(0.5)
        self.line(MARGIN_X, y + 11, width - MARGIN_X, y + 11)
        self.setFillColor(_MUTED)
        self.setFont(self._footer_font, 8)
        label = f"{self._footer_label} · page {number} of {total}"
        self.drawCentredString(
            width / 2, y, _fit(label, self._footer_font, 8, width - 2 * MARGIN_X)
        )
        self.restoreState()


class _PageHeader:
    """Draws the organisation, the report's name and (interim) the warning band on each page."""

    def __init__(self, organisation: str, heading: str, interim: bool, fonts: _Fonts) -> None:
        self.organisation = _clean(organisation)
        self.heading = heading
        self.interim = interim
        self.fonts = fonts

    def __call__(self, canvas: Canvas, doc: BaseDocTemplate) -> None:
        width, height = doc.pagesize
        inner = width - 2 * MARGIN_X
        y = height - 12 * mm
        canvas.saveState()
        canvas.setFont(self.fonts.regular, 8.5)
        canvas.setFillColor(_MUTED)
        heading_width = pdfmetrics.stringWidth(self.heading, self.fonts.regular, 8.5)
        canvas.drawRightString(width - MARGIN_X, y, self.heading)
        canvas.setFont(self.fonts.bold, 9.5)
        canvas.setFillColor(_HEADING_INK)
        room = inner - heading_width - 18
        canvas.drawString(MARGIN_X, y, _fit(self.organisation, self.fonts.bold, 9.5, room))
        canvas.setStrokeColor(_HEADING_INK)
        canvas.setLineWidth(0.9)
        canvas.line(MARGIN_X, y - 6, width - MARGIN_X, y - 6)
        if self.interim:
            top = y - 11
            band = 7.5 * mm
            canvas.setFillColor(_INTERIM_FILL)
            canvas.setStrokeColor(_INTERIM_RULE)
            canvas.setLineWidth(0.8)
            canvas.rect(MARGIN_X, top - band, inner, band, stroke=1, fill=1)
            canvas.setFillColor(_INTERIM_INK)
            canvas.setFont(self.fonts.bold, 9.5)
            canvas.drawCentredString(width / 2, top - band / 2 - 3.3, INTERIM_LABEL)
        canvas.restoreState()


# --------------------------------------------------------------------------- tables


# A text cell: its lines (already wrapped to the column) and their ink.
_Cell = tuple[list[str], _Ink]


class _BoxedPairs(Flowable):
    """Label / value rows in a light frame (the summary sections), drawn straight onto the
    canvas: the look of the Table it replaces (a filled label column, a thin rule under each
    row, a box around it all) at a fraction of the cost.

    Values are plain text, wrapped here, or flowables stacked in the cell (as a Table cell
    stacks them). Not splittable: a few rows that stay together.
    """

    _LABEL_W, _PAD_X, _PAD_TOP, _PAD_BOTTOM = 118.0, 6.0, 3.0, 3.5

    def __init__(self, rows: Sequence[tuple[str, _Value]], width: float) -> None:
        super().__init__()
        self.hAlign = "LEFT"
        self.width = width
        look = _look()
        room = width - self._LABEL_W - 2 * self._PAD_X
        pad = self._PAD_TOP + self._PAD_BOTTOM
        self._rows: list[tuple[str, _Cell | list[Flowable], float]] = []
        for label, value in rows:
            content: _Cell | list[Flowable]
            if isinstance(value, list):
                content = value
                height = self._stack_height(value, room)
            else:
                text, ink = (
                    (value.text, value.ink) if isinstance(value, _Text) else (value, look.i_cell)
                )
                content = (ink.lines(text, room), ink)
                height = max(len(content[0]), 1) * ink.leading
            self._rows.append((label, content, max(height, look.i_label.leading) + pad))
        self.height = sum(height for _, _, height in self._rows)

    @staticmethod
    def _stack_height(flowables: Sequence[Flowable], room: float) -> float:
        """Height of flowables stacked in a cell, as Table measures it (the first one's space
        before and the last one's space after left out)."""
        total = 0.0
        for flowable in flowables:
            _, height = flowable.wrap(room, 1e6)
            total += height + flowable.getSpaceBefore() + flowable.getSpaceAfter()
        return total - flowables[0].getSpaceBefore() - flowables[-1].getSpaceAfter()

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        canvas = self.canv
        look = _look()
        width, label_width = self.width, self._LABEL_W
        canvas.setFillColor(_HEADER_FILL)
        canvas.rect(0, 0, label_width, self.height, stroke=0, fill=1)
        writer = _Writer(canvas)
        bottoms: list[float] = []
        top = self.height
        value_x = label_width + self._PAD_X
        for label, content, height in self._rows:
            writer.lines([label], look.i_label, self._PAD_X, top - self._PAD_TOP)
            if isinstance(content, list):
                writer.flush()  # the label first, in reading order
                y = top - self._PAD_TOP + content[0].getSpaceBefore()
                for flowable in content:
                    _, h = flowable.wrap(width - value_x - self._PAD_X, 1e6)
                    y -= flowable.getSpaceBefore() + h
                    flowable.drawOn(canvas, value_x, y)
                    y -= flowable.getSpaceAfter()
            else:
                writer.lines(content[0], content[1], value_x, top - self._PAD_TOP)
            top -= height
            bottoms.append(top)
        writer.flush()
        canvas.setLineCap(1)
        canvas.setLineJoin(1)
        canvas.setStrokeColor(_RULE)
        canvas.setLineWidth(0.35)
        canvas.lines([(0, y, width, y) for y in bottoms])
        canvas.setLineWidth(0.6)
        height = self.height
        canvas.lines(
            [
                (0, height, width, height),
                (0, 0, width, 0),
                (0, height, 0, 0),
                (width, height, width, 0),
            ]
        )


class _Listing(Flowable):
    """A table of plain-text cells with a header row, drawn straight onto the canvas.

    Looks exactly like the Table it replaces (padding 4 / 3 / 3.5, a filled header with a
    heavy rule under it, striped rows with a thin rule under each) but costs a fraction of it
    to lay out, split and draw: all its text goes into one PDF text object. When it does not
    fit it splits between rows, the header repeated on the next page (stripes start afresh,
    as Table's do).
    """

    _PAD_X, _PAD_TOP, _PAD_BOTTOM = 4.0, 3.0, 3.5

    def __init__(
        self,
        widths: Sequence[float],
        header: Sequence[_Cell],
        rows: Sequence[Sequence[_Cell]],
        heights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.hAlign = "LEFT"
        self._widths = list(widths)
        self._header = header
        self._rows = rows
        pad = self._PAD_TOP + self._PAD_BOTTOM
        if heights is None:
            heights = [
                max(max(len(lines), 1) * ink.leading for lines, ink in row) + pad
                for row in (header, *rows)
            ]
        self._heights = list(heights)
        self.width = sum(self._widths)
        self.height = sum(self._heights)

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        return self.width, self.height

    def split(self, availWidth: float, availHeight: float) -> list[Flowable]:
        used = self._heights[0]
        fit = 0  # body rows that fit under the header
        for height in self._heights[1:]:
            if used + height > availHeight:
                break
            used += height
            fit += 1
        if fit == 0:
            return []
        if fit == len(self._rows):
            return [self]
        head = self._heights[:1]
        return [
            _Listing(self._widths, self._header, self._rows[:fit], self._heights[: fit + 1]),
            _Listing(self._widths, self._header, self._rows[fit:], head + self._heights[fit + 1 :]),
        ]

    def draw(self) -> None:
        canvas = self.canv
        width = self.width
        tops: list[float] = []
        top = self.height
        for height in self._heights:
            tops.append(top)
            top -= height
        canvas.setFillColor(_HEADER_FILL)
        canvas.rect(0, tops[0], width, -self._heights[0], stroke=0, fill=1)
        for index in range(1, len(tops)):
            canvas.setFillColor(_STRIPE if index % 2 == 0 else _WHITE)
            canvas.rect(0, tops[index], width, -self._heights[index], stroke=0, fill=1)
        writer = _Writer(canvas)
        for row, row_top in zip((self._header, *self._rows), tops, strict=True):
            left = self._PAD_X
            for (lines, ink), column in zip(row, self._widths, strict=True):
                writer.lines(lines, ink, left, row_top - self._PAD_TOP)
                left += column
        writer.flush()
        canvas.setLineCap(1)
        canvas.setLineJoin(1)
        canvas.setStrokeColor(_RULE)
        canvas.setLineWidth(0.35)
        canvas.lines([(0, y, width, y) for y in (*tops[1:], 0)])
        canvas.setStrokeColor(_HEADING_INK)
        canvas.setLineWidth(0.8)
        canvas.line(0, tops[0] - self._heights[0], width, tops[0] - self._heights[0])


def _listing(
    header: Sequence[str],
    rows: Sequence[Sequence[_Value]],
    widths: Sequence[float],
    *,
    small: bool = False,
) -> _Listing:
    """A listing whose header row is repeated when it splits over pages.

    Every cell is plain text, wrapped here to its column (less the padding); nothing is
    parsed as markup.
    """
    look = _look()
    head = look.i_small_th if small else look.i_th
    body = look.i_small if small else look.i_cell
    rooms = [w - 2 * _Listing._PAD_X for w in widths]
    cells: list[list[_Cell]] = []
    for row in rows:
        line: list[_Cell] = []
        for value, room in zip(row, rooms, strict=True):
            text, ink = (value.text, value.ink) if isinstance(value, _Text) else (value, body)
            assert isinstance(text, str)
            line.append((ink.lines(text, room), ink))
        cells.append(line)
    return _Listing(
        widths, [(head.lines(h, room), head) for h, room in zip(header, rooms, strict=True)], cells
    )


def _split(width: float, shares: Sequence[float]) -> list[float]:
    total = sum(shares)
    return [width * share / total for share in shares]


# --------------------------------------------------------------------------- sections


def _heading_for(data: CertificateData) -> str:
    if data.interim:
        return "Interim audit report"
    if data.sealed_sha256:
        return "Audit report"
    return "Certificate of completion"


def _title_block(data: CertificateData, heading: str, width: float) -> list[Flowable]:
    look = _look()
    title = _clean(data.title) or "Untitled document"
    envelope_id = _clean(data.envelope_id)
    out: list[Flowable] = [
        _lines(heading, look.i_title, width, space_after=look.title.spaceAfter),
        Paragraph(
            f"{_esc(title)} <font color='{_hex(_MUTED)}'>· {_esc(envelope_id)}</font>",
            look.subtitle,
        ),
    ]
    status = _ENVELOPE_STATUS.get(data.status, _clean(data.status).capitalize() or "Unknown")
    template = f"{_clean(data.template_name)} (version {data.template_version})"
    rows: list[tuple[str, _Value]] = [
        ("Envelope ID", _Text(envelope_id, look.i_bold)),
        ("Document", title),
        ("Pages", f"{data.page_count:,}"),
        ("Template", template),
        *([("Document language", data.document_language)] if data.document_language else []),
        ("Status", _Text(status, look.i_bold)),
        ("Created", format_utc(data.created_at)),
        ("Completed", format_utc(data.completed_at) if data.completed_at else "Not completed"),
        ("Report generated", format_utc(data.generated_at)),
    ]
    out.append(_BoxedPairs(rows, width))
    out.append(Spacer(1, 4))
    out.append(
        _note(
            "All times in this report are in Coordinated Universal Time (UTC), "
            "shown as YYYY-MM-DD HH:MM:SS UTC.",
            width,
        )
    )
    return out


def _digest_block(value: str, note: str, width: float) -> list[Flowable]:
    """A hash in mono with a short note under it, for a value cell."""
    look = _look()
    block = _Sketch(width)
    digest = _hash_lines(value, look.i_mono, width)
    if digest:
        bottom = block.text(digest, look.i_mono, 0, 0)
    else:
        bottom = block.text([NOT_RECORDED], look.i_mono.muted(), 0, 0)
    if note:
        bottom = block.text(look.i_note.lines(note, width), look.i_note, 0, bottom + 1.5)
    block.height = bottom + 1.5
    return [block]


def _integrity(data: CertificateData, width: float) -> list[Flowable]:
    look = _look()
    value_width = width - 118.0 - 12
    original = _digest_block(
        data.original_sha256,
        "SHA-256 of the original document as it was sent for signature, "
        "before any field was completed.",
        value_width,
    )
    rows: list[tuple[str, _Value]] = [("Original document", original)]
    if data.sealed_sha256:
        sealed = _digest_block(data.sealed_sha256, "", value_width)
        sealed += [
            Paragraph(
                "SHA-256 of the sealed PDF file delivered to the parties: the completed "
                "document with its certificate of completion appended. A file cannot contain "
                "its own hash, so this value is stated in this separate report and recorded "
                "in the envelope's audit trail. To check a copy, compute its SHA-256 "
                "(for example with <i>sha256sum</i>) and compare.",
                look.tight_note,
            ),
            Spacer(0, 1.5),
        ]
        rows.append(("Sealed document", sealed))
    elif data.interim:
        if data.status in ("declined", "voided", "expired"):
            ended = _ENVELOPE_STATUS[data.status].lower()
            note = f"Not sealed: the envelope was {ended} before every recipient finished."
        else:
            note = "Not sealed yet: the envelope is still in progress."
        rows.append(("Sealed document", note))
    else:
        rows.append(
            (
                "Sealed document",
                "Not printed here: a file cannot contain its own hash. The SHA-256 of the "
                "sealed file is stated in the separate audit report and recorded in the "
                "envelope's audit trail.",
            )
        )
    return [KeepTogether([_heading("Document integrity", width), _BoxedPairs(rows, width)])]


def _sender(data: CertificateData, width: float) -> list[Flowable]:
    rows: list[tuple[str, _Value]] = [
        ("Name", _or(data.sender.name)),
        ("Email", _or(data.sender.email, "None (an API key)" if data.sender.via else NOT_RECORDED)),
        ("IP address", _or(data.sender.ip)),
    ]
    if data.sender.via:
        rows.append(("Sent through", _or(data.sender.via)))
    return [KeepTogether([_heading("Sender", width), _BoxedPairs(rows, width)])]


def _pairs(
    sketch: _Sketch,
    rows: Sequence[tuple[str, _Value]],
    top: float,
    widths: tuple[float, float],
    x: float = 0.0,
) -> float:
    """Label / value rows drawn into ``sketch`` from ``top``; answers their bottom.

    Each row is padded 1.5 points above and below; the value column keeps 4 points clear
    on its right.
    """
    look = _look()
    label_width, value_width = widths
    for label, value in rows:
        text, ink = (value.text, value.ink) if isinstance(value, _Text) else (value, look.i_cell)
        assert isinstance(text, str)
        lines = ink.lines(text, value_width - 4)
        sketch.text([label], look.i_label, x, top + 1.5)
        sketch.text(lines, ink, x + label_width, top + 1.5)
        top += max(look.i_label.leading, len(lines) * ink.leading) + 3
    return top


def _signature(
    sketch: _Sketch,
    recipient: RecipientEvidence,
    x: float,
    top: float,
    pictures: dict[bytes, _Picture | None],
) -> None:
    """The adopted signature in a fixed box, or a short note saying why there is none.

    ``pictures`` holds the PNGs decoded so far in this document: each is decoded once.
    """
    look = _look()
    box_w, box_h = SIGNATURE_BOX
    sketch.box(x, top, box_w + 8, box_h + 8)
    adoption = (recipient.adoption or "").lower()
    typed = _clean(recipient.typed_signature or "")
    if adoption == "drawn" and recipient.signature_png:
        png = recipient.signature_png
        if png not in pictures:
            pictures[png] = _picture(png)
        picture = pictures[png]
        if picture is not None:
            scale = min(box_w / picture.width, box_h / picture.height)
            width, height = picture.width * scale, picture.height * scale
            sketch.picture(
                picture, x + 4 + (box_w - width) / 2, top + 4 + (box_h - height) / 2, width, height
            )
            return
        ink, text = look.i_placeholder, "Drawn signature image could not be read"
    elif adoption == "typed" and typed:
        font = look.signature_font
        natural = pdfmetrics.stringWidth(typed, font, 1) or 1
        size = max(9.0, min(22.0, (box_w - 8) / natural))
        ink, text = _Ink(font, size, size * 1.2, _SIGNATURE_INK), typed
    else:
        ink, text = look.i_placeholder, _no_signature_reason(recipient)
    lines = ink.lines(text, box_w)
    height = len(lines) * ink.leading
    sketch.text(lines, ink, x + 4, top + (box_h + 8 - height) / 2, box_w, TA_CENTER)


def _no_signature_reason(recipient: RecipientEvidence) -> str:
    if recipient.status == "declined":
        return "Declined: no signature"
    if recipient.kind == "cc":
        return "Copy recipient: no signature"
    if recipient.kind == "approver":
        return (
            "Approval: no signature required"
            if recipient.status == "approved"
            else "Not approved yet"
        )
    if recipient.status == "signed":
        return "Signature not recorded"
    return "Not signed yet"


def _status(status: str) -> tuple[str, colors.Color]:
    label = _RECIPIENT_STATUS.get(status, _clean(status).capitalize() or "Unknown")
    colour = {"signed": _OK, "approved": _OK, "copied": _OK, "declined": _BAD}.get(status, _PENDING)
    return label, colour


def _card_title(recipient: RecipientEvidence, width: float) -> Flowable:
    """``1. Name · Role``: the name in bold, the role muted."""
    look = _look()
    name = _clean(recipient.name) or "(no name)"
    role = f"· {_clean(recipient.role_name)}".rstrip()
    lead = f"{recipient.order}. {name} "
    if look.i_card_title.width(lead) + look.i_card_role.width(role) <= width:
        title = _Sketch(width)
        title.text([lead], look.i_card_title, 0, 0)
        title.run(role, look.i_card_role)
        return title
    return Paragraph(  # too long for one line: let Paragraph wrap the two styles
        f"{recipient.order}. {_esc(name)} "
        f"<font name='{look.fonts.regular}' color='{_hex(_MUTED)}'>"
        f"· {_esc(recipient.role_name)}</font>",
        look.card_title,
    )


def _recipient_card(
    recipient: RecipientEvidence, width: float, pictures: dict[bytes, _Picture | None]
) -> Flowable:
    """One table per recipient: a header row, then the details and the signature side by side
    (each a pre-laid-out block), then any decline reason or comment."""
    look = _look()
    right_w = SIGNATURE_BOX[0] + 8 + 2 * 6 + 26
    left_w = width - right_w
    kind = _KIND.get(recipient.kind, _clean(recipient.kind).capitalize() or "Unknown")
    method = _AUTH_METHOD.get(recipient.auth_method, _clean(recipient.auth_method) or "Unknown")
    details = _Sketch(left_w - 12)
    details.height = _pairs(
        details,
        [
            ("Email", _or(recipient.email)),
            ("Role", _or(recipient.role_name)),
            ("Kind", kind),
            ("Routing order", str(recipient.order)),
            ("Authentication", method),
            ("Result", _or(recipient.auth_result)),
            ("IP address", _or(recipient.ip)),
            ("User agent", _or(recipient.user_agent)),
        ],
        0,
        (74.0, left_w - 74.0 - 12),
    )
    if recipient.status == "declined":
        finish = "Declined"
    else:
        finish = _FINISH_LABEL.get(recipient.kind, "Finished")
    consent = format_utc(recipient.consented_at)
    if recipient.consented_at and recipient.consent_version:
        shown = f", {_clean(recipient.consent_language)}" if recipient.consent_language else ""
        consent += f"\n(disclosure version {_clean(recipient.consent_version)}{shown})"
    inner = right_w - 12
    side = _Sketch(inner)
    box_x = (inner - SIGNATURE_BOX[0] - 8) / 2
    _signature(side, recipient, box_x, 0, pictures)
    adoption = _ADOPTION.get((recipient.adoption or "").lower(), "none")
    caption = look.i_caption.lines(f"Signature adoption: {adoption}", inner)
    top = side.text(caption, look.i_caption, 0, SIGNATURE_BOX[1] + 8 + 1.5, inner, TA_CENTER)
    top += 1.5 + 5 + 1.5  # the caption's padding, a gap, the times' padding
    times: list[tuple[str, _Value]] = [
        ("Sent", format_utc(recipient.sent_at)),
        ("Viewed", format_utc(recipient.viewed_at)),
        ("Consented", consent),
        ("Authenticated", format_utc(recipient.authenticated_at)),
        (finish, format_utc(recipient.finished_at)),
    ]
    side.height = _pairs(side, times, top, (72.0, inner - 72.0)) + 1.5
    status, colour = _status(recipient.status)
    status_ink = look.i_card_status
    rows: list[list[Any]] = [
        [
            _card_title(recipient, left_w - 12),
            "\n".join(status_ink.lines(status, inner)),
        ],
        [details, side],
    ]
    notes: list[str] = []
    if recipient.decline_reason and _clean(recipient.decline_reason):
        notes.append(f"<b>Reason for declining:</b> {_esc_lines(recipient.decline_reason)}")
    if recipient.comment and _clean(recipient.comment):
        notes.append(f"<b>Comment:</b> {_esc_lines(recipient.comment)}")
    for note in notes:
        rows.append([Paragraph(note, look.cell), ""])
    table = Table(rows, colWidths=[left_w, right_w], hAlign="LEFT")
    style: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("VALIGN", (0, 0), (-1, 0), "MIDDLE"),
        ("BOX", (0, 0), (-1, -1), 0.7, _RULE),
        ("BACKGROUND", (0, 0), (-1, 0), _HEADER_FILL),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, _RULE),
        ("LEFTPADDING", (0, 0), (-1, -1), 6),
        ("RIGHTPADDING", (0, 0), (-1, -1), 6),
        ("TOPPADDING", (0, 0), (-1, -1), 5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
        ("LINEBEFORE", (1, 1), (1, 1), 0.4, _RULE),
        ("ALIGN", (1, 0), (1, 0), "RIGHT"),
        ("FONT", (1, 0), (1, 0), status_ink.font, status_ink.size, status_ink.leading),
        ("TEXTCOLOR", (1, 0), (1, 0), colour),
    ]
    for index in range(2, len(rows)):
        style += [
            ("SPAN", (0, index), (-1, index)),
            ("LINEABOVE", (0, index), (-1, index), 0.4, _RULE),
        ]
    table.setStyle(TableStyle(style))
    return table


def _recipients(data: CertificateData, width: float) -> list[Flowable]:
    heading = _heading("Recipients", width)
    if not data.recipients:
        return [KeepTogether([heading, Paragraph("No recipients.", _look().body)])]
    ordered = sorted(data.recipients, key=lambda r: r.order)  # stable: caller order within a step
    out: list[Flowable] = []
    pictures: dict[bytes, _Picture | None] = {}
    for index, recipient in enumerate(ordered):
        card: list[Flowable] = [_recipient_card(recipient, width, pictures), Spacer(1, 8)]
        out.append(KeepTogether([heading, *card] if index == 0 else card))
    return out


def _consent_text(version: str, language: str, text: str) -> list[Flowable]:
    """The disclosure's full text as it was shown, in that language."""
    look = _look()
    shown = f", as shown in <b>{_esc(language)}</b>" if language else ""
    out: list[Flowable] = [
        Paragraph(
            f"Disclosure version <b>{_esc(version) or NOT_RECORDED}</b>{shown}. "
            "Text of the disclosure accepted:",
            look.body,
        )
    ]
    blocks = [b for b in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if b.strip()]
    if blocks:
        out.extend(Paragraph(_esc_lines(block), look.quote) for block in blocks)
    else:
        out.append(Paragraph(f"<i>{NOT_RECORDED}</i>", look.quote))
    return out


def _consent(data: CertificateData, width: float) -> list[Flowable]:
    look = _look()
    texts = list(data.consent_texts) or [("", data.consent_text)]
    first, *more = [_consent_text(data.consent_version, lang, text) for lang, text in texts]
    heading = _heading("Consent to electronic records and signatures", width)
    out: list[Flowable] = [CondPageBreak(150), KeepTogether([heading, *first])]
    out += [KeepTogether(text) for text in more]
    languages = any(r.consent_language for r in data.recipients)
    rows: list[list[_Value]] = []
    for r in sorted(data.recipients, key=lambda r: r.order):
        if r.kind == "cc" and r.consented_at is None:
            continue
        when = "Not accepted" if r.consented_at is None else format_utc(r.consented_at)
        version = _or(r.consent_version, NO_TIME)
        if languages and r.consented_at is not None:
            version = f"{r.consent_version or NO_TIME}, {r.consent_language or NOT_RECORDED}"
        rows.append([_or(r.name), _or(r.email), version, when])
    if rows:
        out.append(
            _listing(
                [
                    "Recipient",
                    "Email",
                    "Version, language" if languages else "Version",
                    "Accepted (UTC)",
                ],
                rows,
                _split(width, (0.25, 0.31, 0.19, 0.25) if languages else (0.28, 0.34, 0.12, 0.26)),
            )
        )
    else:
        out.append(Paragraph("No recipient has accepted the disclosure yet.", look.body))
    return out


def _cc(data: CertificateData, width: float) -> list[Flowable]:
    heading = _heading("Copies delivered (CC)", width)
    if not data.cc_deliveries:
        return [KeepTogether([heading, Paragraph("No copy recipients.", _look().body)])]
    rows: list[list[_Value]] = [
        [_or(name), _or(email), format_utc(at) if at else "Not delivered yet"]
        for name, email, at in data.cc_deliveries
    ]
    table = _listing(["Name", "Email", "Delivered (UTC)"], rows, _split(width, (0.32, 0.4, 0.28)))
    return [CondPageBreak(90), heading, table]


def _attachments(data: CertificateData, width: float) -> list[Flowable]:
    look = _look()
    heading = _heading("Attachments", width)
    if not data.attachments:
        return [KeepTogether([heading, Paragraph("No attachments were uploaded.", look.body)])]
    widths = _split(width, (0.2, 0.26, 0.17, 0.37))
    ink = look.i_small_mono
    rows: list[list[_Value]] = []
    for a in data.attachments:
        digest = _hash_lines(a.sha256, ink, widths[3] - 8)
        rows.append(
            [
                _or(a.field_label),
                _or(a.filename),
                _size(a.size),
                _Text("\n".join(digest), ink) if digest else _Text(NOT_RECORDED, ink.muted()),
            ]
        )
    return [
        CondPageBreak(100),
        heading,
        _listing(["Field", "File", "Size", "SHA-256"], rows, widths),
    ]


def _timeline(data: CertificateData, width: float) -> list[Flowable]:
    look = _look()
    heading = _heading("Event timeline", width)
    if not data.timeline:
        return [KeepTogether([heading, Paragraph("No events recorded.", look.body)])]
    time_w = math.ceil(look.i_small.width("2026-11-26 14:03:22 UTC")) + 8  # and the padding
    widths = [time_w, *_split(width - time_w, (0.21, 0.29, 0.17, 0.33))]
    rows: list[list[_Value]] = [
        [
            format_utc(entry.at),
            *(_plain(text) for text in (entry.event, entry.actor, entry.ip, entry.detail)),
        ]
        for entry in sorted(data.timeline, key=lambda e: as_utc(e.at))
    ]
    header = ["Time (UTC)", "Event", "Actor", "IP address", "Detail"]
    return [CondPageBreak(120), heading, _listing(header, rows, widths, small=True)]


# --------------------------------------------------------------------------- entry point


def _printable(value: Any) -> Any:
    """The evidence with every string made ``printable``: no characters that reorder text."""
    if isinstance(value, str):
        return printable(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _printable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, (list, tuple)):
        return type(value)(_printable(item) for item in value)
    return value


def a4_document(
    buffer: io.BytesIO,
    *,
    heading: str,
    title: str,
    subject: str,
    organisation: str,
    interim: bool = False,
) -> tuple[BaseDocTemplate, float]:
    """An A4 document in the certificate's look (the organisation and ``heading`` at the top
    of each page, the interim band if asked) and the width of its text frame; build it with
    ``canvasmaker`` a ``_NumberedCanvas`` for the "page N of M" footer. Same input, same
    bytes (reportlab's ``invariant`` mode). The compliance report uses it too."""
    width, height = PAGE_SIZE
    top = HEADER_ROOM + (INTERIM_ROOM if interim else 0)
    doc = BaseDocTemplate(
        buffer,
        pagesize=PAGE_SIZE,
        leftMargin=MARGIN_X,
        rightMargin=MARGIN_X,
        topMargin=top,
        bottomMargin=FOOTER_ROOM,
        title=title,
        subject=subject,
        author=_clean(organisation),
        creator="Signing portal",
        displayDocTitle=True,
        lang="en",
        invariant=True,
    )
    frame = Frame(
        MARGIN_X,
        FOOTER_ROOM,
        width - 2 * MARGIN_X,
        height - top - FOOTER_ROOM,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
        id="certificate",
    )
    header = _PageHeader(organisation, heading, interim, _look().fonts)
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=header)])
    return doc, float(frame._width)


def render_certificate(data: CertificateData) -> bytes:
    """The certificate (or audit report, or interim report) as PDF bytes (A4).

    Same input, same bytes (the PDF is written with reportlab's ``invariant`` mode).
    """
    data = _printable(data)
    fonts = _look().fonts
    heading = _heading_for(data)
    envelope_id = _clean(data.envelope_id)
    buffer = io.BytesIO()
    doc, inner = a4_document(
        buffer,
        heading=heading,
        title=f"{heading} — {envelope_id}",
        subject=_clean(data.title),
        organisation=data.organisation,
        interim=data.interim,
    )
    story: list[Flowable] = []
    story += _title_block(data, heading, inner)
    story += _integrity(data, inner)
    story += _sender(data, inner)
    story += _recipients(data, inner)
    story += _consent(data, inner)
    story += _cc(data, inner)
    story += _attachments(data, inner)
    story += _timeline(data, inner)
    story.append(Spacer(1, 10))
    story.append(
        _note(
            f"Generated {format_utc(data.generated_at)} by the signing portal of "
            f"{_clean(data.organisation) or 'the sender'}. All times are UTC.",
            inner,
        )
    )

    maker = functools.partial(
        _NumberedCanvas, footer_label=f"{FOOTER_PREFIX} · {envelope_id}", footer_font=fonts.regular
    )
    doc.build(story, canvasmaker=maker)
    return buffer.getvalue()
