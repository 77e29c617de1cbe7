"""The consent decision record as a PDF, for the school's child protection file and the referral.

fpdf2: pure Python, maintained, small, no system libraries (reportlab would also do, with a larger
API and C speedups we do not need). Only the PDF's built-in fonts are used, so nothing is bundled:
they draw Latin-1, and any other character is replaced by a near equivalent or "?" (never a crash).
The file names the child: it goes only to an authorised person (their DM) or the operator's file.
"""

from __future__ import annotations

import logging
import os
import secrets
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from bot.record_text import sections

FONT = "Helvetica"
CONFIDENTIAL = "Confidential: child protection record. For authorised people only; do not forward or print for display."
# Characters people type that Latin-1 lacks, and what to draw instead.
SUBSTITUTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                             "\u2014": "-", "\u2026": "...", "\u2022": "*", "\u00a0": " ", "\u2212": "-"})


def drawable(text: str) -> str:
    """`text` in the built-in fonts' Latin-1: typographic punctuation substituted, accents kept where
    Latin-1 has them (else the base letter), anything else as "?".
    """
    text = unicodedata.normalize("NFC", str(text).translate(SUBSTITUTES))
    out = []
    for char in text:
        if char in "\n\t" or (char.isprintable() and ord(char) < 256):
            out.append(char)
            continue
        base = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode("latin-1")
        out.append(base if base.isprintable() and base else "?")
    return "".join(out)


def render_pdf(record: Mapping[str, Any]) -> bytes:
    """The record, every section in words, with the legal disclaimer; A4, page numbers in the footer."""
    for name in ("fpdf", "fontTools"):  # their DEBUG lines describe the document; ours never hold its text
        logging.getLogger(name).setLevel(logging.WARNING)
    pdf = _Document(ref=str(record["case_ref"]))
    pdf.set_title(f"Consent decision record {record['case_ref']}")
    pdf.set_creator("consentbot")
    pdf.add_page()
    pdf.set_font(FONT, "B", 15)
    pdf.multi_cell(0, 8, drawable(f"Consent decision record: case {record['case_ref']}"), new_x="LMARGIN",
                   new_y="NEXT")
    pdf.set_font(FONT, "", 9)
    pdf.multi_cell(0, 5, drawable(CONFIDENTIAL), new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 5, drawable(str(record["legal_disclaimer"])), new_x="LMARGIN", new_y="NEXT")
    for heading, rows in sections(record):
        _section(pdf, heading, rows)
    return bytes(pdf.output())


def _section(pdf: FPDF, heading: str, rows: list[tuple[str, str]]) -> None:
    pdf.ln(3)
    pdf.set_font(FONT, "B", 12)
    pdf.multi_cell(0, 7, drawable(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 10)
    with pdf.table(col_widths=(35, 65), first_row_as_headings=False, line_height=5,
                   headings_style=FontFace(emphasis="BOLD")) as table:
        for label, value in rows:
            row = table.row()
            pdf.set_font(FONT, "B", 10)
            row.cell(drawable(label))
            pdf.set_font(FONT, "", 10)
            row.cell(drawable(value))


class _Document(FPDF):
    """A4 with the case reference and page number in every footer (never the child's name)."""

    def __init__(self, *, ref: str) -> None:
        """Portrait A4, automatic page breaks."""
        super().__init__(orientation="P", unit="mm", format="A4")
        self.ref = ref
        self.set_auto_page_break(auto=True, margin=15)

    def footer(self) -> None:
        """Case reference, "Confidential", page n of N."""
        self.set_y(-12)
        self.set_font(FONT, "I", 8)
        self.cell(0, 5, drawable(f"Case {self.ref} - confidential - page {self.page_no()} of {{nb}}"), align="C")


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a file only its owner can read (0600 from creation), whole or not at all."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
