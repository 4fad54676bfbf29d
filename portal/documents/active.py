"""Find what a PDF could do besides being read: scripts, programs, other files, attachments.

``find_active_content`` walks every object of a strictly parsed file (everything the
cross-reference data lists, not only what the catalog reaches) and names what it finds:
JavaScript, actions that start programs, send data, import data or open other files (a
``GoToR`` to a network share leaks the reader's Windows credentials), links whose address is
not http(s), mailto or tel (``javascript:``, ``file:``), multimedia and 3D players, dynamic
XFA forms and embedded files. Dictionaries nested deeper than any real file nests them are a
finding too: a lenient parser gives up on them and can miss the action behind them.

``find_self_drawing`` finds drawings (form XObjects, tiling patterns, Type 3 glyphs) that
draw themselves through their resources, directly or through each other: a renderer would
never finish such a page.

Both run on a reader opened with ``strict=True`` inside the sandbox; the caller refuses the
file on any parse warning as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

JAVASCRIPT = "JavaScript"
EMBEDDED = "embedded files (attachments)"
OTHER_FILE = "a link that opens another file (which can expose the reader's network password)"
MAX_NESTING = 64  # real files nest direct dictionaries and arrays a handful of levels deep
MAX_OBJECTS_VISITED = 2_000_000

# Action types (/S) that run code, start programs, open other files, or send or fetch data.
ACTIVE_ACTIONS = {
    "/JavaScript": JAVASCRIPT,
    "/Launch": "an action that starts another program",
    "/SubmitForm": "a form action that sends data over the internet",
    "/ImportData": "an action that imports data from another file",
    "/Rendition": "a multimedia action",
    "/RichMediaExecute": "a multimedia action",
    "/GoToR": OTHER_FILE,
    "/GoToE": EMBEDDED,
}
# Annotation types that carry players or scripts of their own.
ACTIVE_ANNOTATIONS = {
    "/RichMedia": "embedded multimedia",
    "/Screen": "embedded multimedia",
    "/Movie": "embedded multimedia",
    "/Sound": "embedded multimedia",
    "/3D": "3D content, which can carry scripts",
}
LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")
# The same names as they may appear in the file's bytes, #xx escapes included: anything a
# reader could rebuild from a damaged file is refused even if the strict parse never saw it.
_DELIMITER = rb"(?=[\s/<>\[\]()%{}]|$)"
_RAW_PLAIN = re.compile(rb"/(?:JavaScript|JS|Launch|GoToR|XFA)" + _DELIMITER)
_RAW_ESCAPED = re.compile(rb"/[A-Za-z0-9#]*#[0-9A-Fa-f]{2}[A-Za-z0-9#]*" + _DELIMITER)
_RAW_FINDINGS = {
    b"/JavaScript": JAVASCRIPT,
    b"/JS": JAVASCRIPT,
    b"/Launch": ACTIVE_ACTIONS["/Launch"],
    b"/GoToR": OTHER_FILE,
    b"/XFA": "a dynamic (XFA) form, which can carry scripts",
}


class TooComplex(ValueError):
    """The file is built in a way no real document is (nesting, object count)."""


def _resolve(value: Any) -> Any:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _link_problem(action: DictionaryObject) -> str | None:
    target = _resolve(action.get("/URI"))
    if isinstance(target, bytes):
        target = target.decode("latin-1")
    if not isinstance(target, str):
        return None
    scheme = urlsplit(_CONTROL.sub("", target)).scheme.lower()
    if scheme and scheme not in LINK_SCHEMES:
        return f"a link to a {scheme}: address"
    return None


def _check_dictionary(item: DictionaryObject, found: list[str]) -> None:
    action = _resolve(item.get("/S"))
    subtype = _resolve(item.get("/Subtype"))
    kind = _resolve(item.get("/Type"))
    if "/JS" in item or action == "/JavaScript":
        found.append(JAVASCRIPT)
    elif action == "/URI":
        problem = _link_problem(item)
        if problem:
            found.append(problem)
    elif isinstance(action, str) and action in ACTIVE_ACTIONS:
        found.append(ACTIVE_ACTIONS[action])
    if action == "/Thread" and "/F" in item:
        found.append(OTHER_FILE)
    if isinstance(subtype, str) and subtype in ACTIVE_ANNOTATIONS and kind != "/XObject":
        found.append(ACTIVE_ANNOTATIONS[subtype])
    names = _resolve(item.get("/Names"))
    if isinstance(names, DictionaryObject) and "/JavaScript" in names:
        found.append(JAVASCRIPT)
    if "/XFA" in item:
        found.append("a dynamic (XFA) form, which can carry scripts")
    if (
        "/EmbeddedFiles" in item
        or "/EF" in item
        or subtype == "/FileAttachment"
        or kind == "/EmbeddedFile"
    ):
        found.append(EMBEDDED)


def _every_object(reader: PdfReader) -> Iterator[IndirectObject]:
    """Every object the cross-reference data lists, in the file and in object streams."""
    for generation, numbers in reader.xref.items():
        for number in numbers:
            yield IndirectObject(number, generation, reader)
    for number in reader.xref_objStm:
        yield IndirectObject(number, 0, reader)


def find_active_content(reader: PdfReader) -> list[str]:
    """Describe the active content and attachments anywhere in the file (once each)."""
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Any, int]] = [(reader.trailer, 0)]
    stack.extend((ref, 0) for ref in _every_object(reader))
    visited = 0
    while stack:
        item, depth = stack.pop()
        visited += 1
        if visited > MAX_OBJECTS_VISITED:
            raise TooComplex("the file has more objects than any document needs")
        if isinstance(item, IndirectObject):
            key = (item.idnum, item.generation)
            if key in seen:
                continue
            seen.add(key)
            stack.append((item.get_object(), 0))
        elif isinstance(item, DictionaryObject):  # stream dictionaries too
            if depth > MAX_NESTING:
                raise TooComplex("the file nests its data deeper than any document does")
            _check_dictionary(item, found)
            stack.extend((value, depth + 1) for name, value in item.items() if name != "/Parent")
        elif isinstance(item, ArrayObject):
            if depth > MAX_NESTING:
                raise TooComplex("the file nests its data deeper than any document does")
            stack.extend((value, depth + 1) for value in item)
    return list(dict.fromkeys(found))


def find_in_bytes(data: bytes) -> list[str]:
    """Active-content names written anywhere in the file's bytes (#xx escapes decoded)."""
    names = [m.group(0) for m in _RAW_PLAIN.finditer(data)]
    for match in _RAW_ESCAPED.finditer(data):
        names.append(
            re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), match.group(0))
        )
    found = [_RAW_FINDINGS[name] for name in names if name in _RAW_FINDINGS]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- drawings that draw themselves

_DRAWING_KINDS = ("/XObject", "/Pattern", "/Font")


def _drawings(resources: Any) -> Iterator[IndirectObject]:
    """The drawings a resource dictionary offers that have resources of their own."""
    resources = _resolve(resources)
    if not isinstance(resources, DictionaryObject):
        return
    for kind in _DRAWING_KINDS:
        entries = _resolve(resources.get(kind))
        if not isinstance(entries, DictionaryObject):
            continue
        for value in entries.values():
            if isinstance(value, IndirectObject):
                yield value


def _inner_resources(drawing: Any, inherited: Any) -> Any:
    """The resources a drawing draws with: its own /Resources (forms, patterns, Type 3 fonts),
    or, for a form without any that paints other drawings (``Do``), those it was drawn with
    (readers still let such old-style forms inherit them)."""
    if not isinstance(drawing, DictionaryObject):
        return None
    own = drawing.get("/Resources")
    if own is not None or not isinstance(drawing, StreamObject):
        return own
    if _resolve(drawing.get("/Subtype")) == "/Form" and b"Do" in drawing.get_data():
        return inherited
    return None


def _appearances(page: Any) -> Iterator[IndirectObject]:
    """The normal appearance streams of a page's annotations (each state of a check box)."""
    annotations = _resolve(page.get("/Annots"))
    if not isinstance(annotations, ArrayObject):
        return
    for annotation in annotations:
        annotation = _resolve(annotation)
        if not isinstance(annotation, DictionaryObject):
            continue
        appearance = _resolve(annotation.get("/AP"))
        if not isinstance(appearance, DictionaryObject):
            continue
        normal = appearance.get("/N")
        if isinstance(normal, IndirectObject) and isinstance(normal.get_object(), StreamObject):
            yield normal
        elif isinstance(_resolve(normal), DictionaryObject):
            yield from (v for v in _resolve(normal).values() if isinstance(v, IndirectObject))


def find_self_drawing(reader: PdfReader) -> bool:
    """True when some drawing reachable from a page draws itself through its resources."""
    done: set[tuple[int, int]] = set()
    for page in reader.pages:
        roots = list(_drawings(page.get("/Resources")))
        roots.extend(_appearances(page))
        for root in roots:
            if _cycle_from(root, page.get("/Resources"), done):
                return True
    return False


def _cycle_from(root: IndirectObject, resources: Any, done: set[tuple[int, int]]) -> bool:
    """Depth-first search from one drawing; a drawing met again on the current path is a
    cycle. Drawings with resources of their own, once cleared (``done``), are not searched
    again; those that inherit theirs are searched in each place they are drawn."""
    path: set[tuple[int, int]] = set()
    # (drawing, its children not yet searched, whether it has resources of its own)
    stack: list[tuple[IndirectObject, Iterator[IndirectObject], bool]] = []

    def enter(ref: IndirectObject, outer: Any) -> None:
        drawing = ref.get_object()
        inner = _inner_resources(drawing, outer)
        own = isinstance(drawing, DictionaryObject) and drawing.get("/Resources") is not None
        path.add((ref.idnum, ref.generation))
        stack.append((ref, _drawings(inner), own or inner is None))
        frames.append(inner)

    frames: list[Any] = []
    if (root.idnum, root.generation) in done:
        return False
    enter(root, resources)
    while stack:
        ref, children, context_free = stack[-1]
        child = next(children, None)
        if child is None:
            key = (ref.idnum, ref.generation)
            path.discard(key)
            if context_free:
                done.add(key)
            stack.pop()
            frames.pop()
            continue
        child_key = (child.idnum, child.generation)
        if child_key in path:
            return True
        if child_key in done:
            continue
        if len(stack) > MAX_NESTING:
            raise TooComplex("the file nests its drawings deeper than any document does")
        enter(child, frames[-1])
    return False
