"""What changed between two versions of a template: fields, roles, settings, source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portal.library.models import Field, TemplateVersion

GEOMETRY = ("page", "x", "y", "w", "h")
TOLERANCE = 0.5  # points; smaller moves are rounding, not edits


@dataclass
class FieldChange:
    """One field that was edited or moved, with the properties that differ."""

    key: str
    moved: bool
    changes: dict[str, tuple[Any, Any]]


@dataclass
class VersionDiff:
    """Everything that differs between an older and a newer version."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[FieldChange] = field(default_factory=list)
    edited: list[FieldChange] = field(default_factory=list)
    settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    roles: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    source_changed: bool = False
    body_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.moved
            or self.edited
            or self.settings
            or self.roles
            or self.source_changed
            or self.body_changed
        )


def _moved(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    out = {}
    for name in GEOMETRY:
        if abs(float(old[name]) - float(new[name])) > TOLERANCE:
            out[name] = (old[name], new[name])
    return out


def _roles(version: TemplateVersion) -> dict[str, dict[str, Any]]:
    return {str(role["key"]): role for role in version.roles or []}


def compare(old: TemplateVersion, new: TemplateVersion) -> VersionDiff:
    """The changes from ``old`` to ``new``."""
    before: dict[str, Field] = {f.key: f for f in old.fields}
    after: dict[str, Field] = {f.key: f for f in new.fields}
    diff = VersionDiff(
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
        source_changed=(old.source_sha256 or "") != (new.source_sha256 or ""),
        body_changed=(old.authored_body or "") != (new.authored_body or ""),
    )
    for key in sorted(set(before) & set(after)):
        a, b = before[key].snapshot(), after[key].snapshot()
        geometry = _moved(a, b)
        props = {n: (a[n], b[n]) for n in Field.COMPARED if a[n] != b[n]}
        if geometry:
            diff.moved.append(FieldChange(key, True, geometry))
        if props:
            diff.edited.append(FieldChange(key, False, props))
    old_settings, new_settings = old.settings or {}, new.settings or {}
    for name in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(name) != new_settings.get(name):
            diff.settings[name] = (old_settings.get(name), new_settings.get(name))
    old_roles, new_roles = _roles(old), _roles(new)
    for key in sorted(set(old_roles) | set(new_roles)):
        if old_roles.get(key) != new_roles.get(key):
            diff.roles[key] = (old_roles.get(key), new_roles.get(key))
    return diff
