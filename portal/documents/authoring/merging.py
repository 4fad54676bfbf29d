"""Merging: values go into a checked body literally, as nested groups (``customer.name``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .checking import check_body
from .model import AuthoringError, MergeKey, Problem
from .sandbox import _environment, _Group


def _nested_values(values: Mapping[str, str], merge_keys: Sequence[MergeKey]) -> _Group:
    root = _Group()
    for mk in merge_keys:
        raw = values.get(mk.key) if values is not None else None
        value = "" if raw is None else str(raw)
        *groups, leaf = mk.key.split(".")
        node = root
        for name in groups:
            child = node.get(name)
            if not isinstance(child, _Group):
                child = node[name] = _Group()
            node = child
        node[leaf] = value
    return root


def merge(body: str, values: Mapping[str, str], merge_keys: Sequence[MergeKey]) -> str:
    """Render the merge fields and conditions; return Markdown with values inserted literally.

    Raises :class:`AuthoringError` when :func:`check_body` finds problems.
    """
    merge_keys = list(merge_keys)
    problems = check_body(body, merge_keys)
    if problems:
        raise AuthoringError(problems)
    try:
        template = _environment().from_string(body)
        return template.render(_nested_values(values, merge_keys))
    except Exception as exc:
        raise AuthoringError(
            [Problem(None, f"The document could not be merged ({type(exc).__name__}: {exc}).")]
        ) from exc
