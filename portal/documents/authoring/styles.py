"""The look of rendered documents: palette and paragraph styles."""

from __future__ import annotations

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import HRFlowable

from .fonts import _Fonts

_INK = colors.HexColor("#1f2328")
_HEADING_INK = colors.HexColor("#14213d")
_MUTED = colors.HexColor("#5b6470")
_RULE = colors.HexColor("#c9ced6")
_HEADER_FILL = colors.HexColor("#eef1f5")
_LINK = colors.HexColor("#1a4f9c")
_CODE_FILL = colors.HexColor("#f4f5f7")
_BULLETS = ("\u2022", "\u2013", "\u25e6")  # bullet, en dash, white bullet


def _title_rule() -> HRFlowable:
    return HRFlowable(width="100%", thickness=1.4, color=_HEADING_INK, spaceBefore=0, spaceAfter=14)


class _Styles:
    def __init__(self, fonts: _Fonts) -> None:
        self.fonts = fonts
        base = ParagraphStyle(
            "body",
            fontName=fonts.regular,
            fontSize=10,
            leading=15,
            textColor=_INK,
            spaceAfter=7,
            allowWidows=0,
            allowOrphans=0,
        )
        self.body = base
        self.list_body = ParagraphStyle("list", parent=base, spaceAfter=3)
        self.quote = ParagraphStyle("quote", parent=base, textColor=_MUTED)
        self.cell = ParagraphStyle("cell", parent=base, spaceAfter=0, leading=13.5)
        self.header_cell = ParagraphStyle("th", parent=self.cell, fontName=fonts.bold)
        self.code = ParagraphStyle(
            "code",
            parent=base,
            fontName=fonts.mono,
            fontSize=8.5,
            leading=12,
            backColor=_CODE_FILL,
            borderPadding=(5, 6, 5, 6),
            spaceBefore=4,
            spaceAfter=11,
            leftIndent=6,
            rightIndent=6,
        )
        self.headings = {
            1: ParagraphStyle(
                "h1",
                parent=base,
                fontName=fonts.bold,
                fontSize=19,
                leading=24,
                textColor=_HEADING_INK,
                spaceBefore=0,
                spaceAfter=7,
                keepWithNext=1,
            ),
            2: ParagraphStyle(
                "h2",
                parent=base,
                fontName=fonts.bold,
                fontSize=12.5,
                leading=16,
                textColor=_HEADING_INK,
                spaceBefore=14,
                spaceAfter=6,
                keepWithNext=1,
            ),
            3: ParagraphStyle(
                "h3",
                parent=base,
                fontName=fonts.bold,
                fontSize=10.5,
                leading=14,
                textColor=_INK,
                spaceBefore=10,
                spaceAfter=4,
                keepWithNext=1,
            ),
        }

    def align(self, style: ParagraphStyle, align: str | None) -> ParagraphStyle:
        alignment = {"center": TA_CENTER, "right": TA_RIGHT}.get(align or "", TA_LEFT)
        if alignment == style.alignment:
            return style
        return ParagraphStyle(f"{style.name}-{align}", parent=style, alignment=alignment)
