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


def _bottom(version: Any, page: int, x: float, from_bottom: float, w: float, h: float) -> Rect:
    box = ops.page_box(version, page)
    return Rect(x, box.display_height - from_bottom, w, h)


def _place(version: Any, by: User, specs: list[tuple[str, str, Rect, dict[str, Any]]]) -> None:
    last = version.page_count
    for field_type, role, rect, props in specs:
        field = ops.add_field(version, field_type, last, rect, role, by=by)
        if props:
            ops.update_field(field, props, by=by)


def _exists(name: str, team: Team | None) -> bool:
    stmt = select(Template.id).where(Template.name == name)
    stmt = stmt.where(Template.team_id == (team.id if team else None))
    return db.session.execute(stmt).first() is not None


def seed(team: Team | None, author: User, reviewer: User) -> list[str]:
    """Create and approve the demo templates that do not exist yet; return their names."""
    created = []
    name = "Refund authorization"
    if not _exists(name, team):
        keys = [asdict(k) for k in authoring.REFUND_MERGE_KEYS]
        version, problems = ops.create_authored(
            name, "refund_authorization", team, authoring.REFUND_EXAMPLE, keys, by=author
        )
        assert not problems, problems
        _place(
            version,
            author,
            [
                (
                    "signature",
                    "customer",
                    _bottom(version, version.page_count, 57, 150, 200, 54),
                    {"label": "Customer signature", "key": "customer_signature"},
                ),
                (
                    "date_signed",
                    "customer",
                    _bottom(version, version.page_count, 300, 120, 120, 22),
                    {"label": "Date signed", "key": "date_signed"},
                ),
                (
                    "full_name",
                    "customer",
                    _bottom(version, version.page_count, 57, 84, 200, 22),
                    {"label": "Full name", "key": "full_name", "merge_key": "customer.name"},
                ),
                (
                    "attachment",
                    "customer",
                    _bottom(version, version.page_count, 300, 84, 180, 30),
                    {
                        "label": "Photo of the receipt (optional)",
                        "key": "receipt_photo",
                        "required": False,
                    },
                ),
            ],
        )
        ops.submit(version, by=author)
        ops.approve(version, by=reviewer, comment="Reviewed for the demo.")
        created.append(name)
    name = "Service-change addendum"
    if not _exists(name, team):
        version, problems = ops.create_authored(
            name,
            "service_change_addendum",
            team,
            SERVICE_CHANGE_BODY,
            SERVICE_CHANGE_KEYS,
            by=author,
        )
        assert not problems, problems
        ops.set_roles(
            version,
            [
                {"key": "customer", "name": "Customer", "kind": "signer", "order": 1},
                {
                    "key": "account_manager",
                    "name": "Account manager",
                    "kind": "approver",
                    "order": 2,
                },
            ],
            by=author,
        )
        _place(
            version,
            author,
            [
                (
                    "signature",
                    "customer",
                    _bottom(version, version.page_count, 57, 150, 200, 54),
                    {"label": "Customer signature", "key": "customer_signature"},
                ),
                (
                    "date_signed",
                    "customer",
                    _bottom(version, version.page_count, 300, 120, 120, 22),
                    {"label": "Date signed", "key": "date_signed"},
                ),
            ],
        )
        ops.submit(version, by=author)
        ops.approve(version, by=reviewer, comment="Reviewed for the demo.")
        created.append(name)
    return created
