"""Legal holds: scopes (chosen envelopes, a customer's email incl. later envelopes, a template),
placing and releasing, the pages, the ZIP export."""

from __future__ import annotations

from portal.envelopes import operations as envelopes
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.library import operations as library
from portal.records import holds
from tests.conftest import demo_agent, demo_template
from tests.test_envelopes import REFUND_VALUES
from tests.test_signing import sent  # noqa: F401


def _send_refund(app, email: str, name: str = "Zoë Łukasiewicz") -> int:
    """Send the demo refund to one customer (after seed-demo); returns the envelope id."""
    with app.app_context():
        version = library.approved_version(demo_template())
        people = [RecipientInput(role="customer", name=name, email=email)]
        envelope, _links = envelopes.create_and_send(
            version, REFUND_VALUES, people, by=demo_agent()
        )
        return envelope.id


def _hold(scope: str, **kwargs) -> holds.LegalHold:
    hold = holds.LegalHold(
        name=kwargs.pop("name", f"{scope} hold"),
        case_ref="CASE-1",
        reason="litigation",
        scope=scope,
        placed_by_id=demo_agent().id,
        **kwargs,
    )
    db.session.add(hold)
    db.session.flush()
    return hold


def test_hold_reasons_for_each_scope(app, sent):  # noqa: F811
    first, _, _ = sent()
    other, _, _ = sent("Service-change addendum")
    with app.app_context():
        from portal.envelopes.models import Envelope

        assert holds.hold_reasons([first, other]) == {}
        chosen = _hold("envelopes", name="Chosen")
        db.session.add(holds.LegalHoldEnvelope(hold_id=chosen.id, envelope_id=other))
        _hold("email", name="Zoe", email="zoe@example.com")
        tpl = db.session.get(Envelope, first).version.template_id
        _hold("template", name="Refunds", template_id=tpl)
        db.session.commit()
        assert holds.hold_reasons([first, other]) == {first: ["Refunds", "Zoe"], other: ["Chosen"]}
    later = _send_refund(app, "ZOE@Example.com")
    with app.app_context():
        assert holds.hold_reasons([later]) == {later: ["Refunds", "Zoe"]}
