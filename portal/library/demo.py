"""Two approved templates a customer-service team really uses, for ``flask portal seed-demo``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import select

from portal.accounts.models import Team, User
from portal.documents import authoring
from portal.documents.geometry import Rect
from portal.extensions import db
from portal.library import operations as ops
from portal.library import variants
from portal.library.demo_es import REFUND_EXAMPLE_ES
from portal.library.models import Template

SERVICE_CHANGE_KEYS = [
    {"key": "customer.name", "label": "Customer name", "sample": "Jordan Rivera"},
    {"key": "account.number", "label": "Account number", "sample": "AC-558120"},
    {"key": "plan.current", "label": "Current plan", "sample": "Fibre 300"},
    {"key": "plan.new", "label": "New plan", "sample": "Fibre 1000"},
    {"key": "plan.price", "label": "New monthly price", "sample": "€49.00"},
    {"key": "plan.effective_date", "label": "Effective date", "sample": "1 July 2025"},
]

SERVICE_CHANGE_BODY = """\
# Service-change addendum

This addendum changes the service agreement for account **{{ account.number }}**, held by \
{{ customer.name }}. Everything in the agreement that this addendum does not change stays as it is.

## The change

| Detail | Information |
| --- | --- |
| Account holder | {{ customer.name }} |
| Account number | {{ account.number }} |
| Current plan | {{ plan.current }} |
| New plan | {{ plan.new }} |
| New monthly price | {{ plan.price }} |
| Takes effect on | {{ plan.effective_date }} |

## What this means for you

- From the date above, your monthly bill shows the new plan and price.
- Your contract term, notice period and payment method do not change.
- You can ask for a copy of your full agreement at any time.

After you sign, your account manager reviews and approves the change. You receive the completed \
document by email once both steps are done.
"""


Spec = tuple[str, float, float, float, float, dict[str, Any]]

# (type, left, distance of the top from the page bottom, width, height, properties), all on the
# last page, in the signature room every authored document leaves at its end.
SIGN_AND_DATE: list[Spec] = [
    ("signature", 57, 150, 200, 54, {"label": "Customer signature", "key": "customer_signature"}),
    ("date_signed", 300, 120, 120, 22, {"label": "Date signed", "key": "date_signed"}),
]
PREFILLED_NAME = {"label": "Full name", "key": "full_name", "merge_key": "customer.name"}
RECEIPT_PHOTO = {
    "label": "Photo of the receipt",
    "key": "receipt_photo",
    "required": False,
}
REFUND_EXTRAS: list[Spec] = [
    ("full_name", 57, 84, 200, 22, PREFILLED_NAME),
    ("attachment", 300, 84, 180, 30, RECEIPT_PHOTO),
]

# The refund's fields in Spanish (``variants.save_labels``), for its Spanish variant.
REFUND_LABELS_ES = {
    "customer_signature": "Firma del cliente",
    "date_signed": "Fecha de firma",
    "full_name": "Nombre completo",
    "receipt_photo": "Foto del recibo",
}

SERVICE_CHANGE_ROLES = [
    {"key": "customer", "name": "Customer", "kind": "signer", "order": 1},
    {"key": "account_manager", "name": "Account manager", "kind": "approver", "order": 2},
]


def _exists(name: str, team: Team | None) -> bool:
    stmt = select(Template.id).where(Template.name == name)
    stmt = stmt.where(Template.team_id == (team.id if team else None))
    return db.session.execute(stmt).first() is not None


def _publish(
    name: str,
    document_type: str,
    body: str,
    keys: list[dict[str, str]],
    specs: list[Spec],
    team: Team | None,
    author: User,
    reviewer: User,
    roles: list[dict[str, Any]] | None = None,
    translations: dict[str, str] | None = None,
    labels: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write, lay out, submit and approve one demo template the way staff would."""
    version, problems = ops.create_authored(name, document_type, team, body, keys, by=author)
    if problems:
        raise RuntimeError(f"The demo template {name!r} has problems: {problems}")
    if roles:
        ops.set_roles(version, roles, by=author)
    last = version.page_count
    height = ops.page_box(version, last).display_height
    for field_type, left, from_bottom, width, tall, props in specs:
        at = Rect(left, height - from_bottom, width, tall)
        field = ops.add_field(version, field_type, last, at, "customer", by=author)
        ops.update_field(field, props, by=author)
    for locale, text in (translations or {}).items():
        variants.save_text(version, locale, text, by=author)
        if locale in (labels or {}):
            variants.save_labels(version, locale, (labels or {})[locale], by=author)
    ops.submit(version, by=author)
    ops.approve(version, by=reviewer, comment="Reviewed for the demo.")


def seed(team: Team | None, author: User, reviewer: User) -> list[str]:
    """Create and approve the demo templates that do not exist yet; return their names."""
    wanted = [
        (
            "Refund authorization",
            "refund_authorization",
            authoring.REFUND_EXAMPLE,
            [asdict(k) for k in authoring.REFUND_MERGE_KEYS],
            SIGN_AND_DATE + REFUND_EXTRAS,
            None,
            {"es": REFUND_EXAMPLE_ES},
            {"es": REFUND_LABELS_ES},
        ),
        (
            "Service-change addendum",
            "service_change_addendum",
            SERVICE_CHANGE_BODY,
            SERVICE_CHANGE_KEYS,
            SIGN_AND_DATE,
            SERVICE_CHANGE_ROLES,
            None,
            None,
        ),
    ]
    created = []
    for name, document_type, body, keys, specs, roles, translations, labels in wanted:
        if not _exists(name, team):
            _publish(
                name, document_type, body, keys, specs, team, author, reviewer, roles,
                translations, labels,
            )  # fmt: skip
            created.append(name)
    return created
