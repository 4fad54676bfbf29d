"""The realistic example the seed data uses: a refund authorization and its merge fields."""

from __future__ import annotations

from .model import MergeKey

REFUND_MERGE_KEYS: tuple[MergeKey, ...] = (
    MergeKey("customer.name", "Customer name", "Jordan Rivera"),
    MergeKey("customer.email", "Customer email", "jordan.rivera@example.com"),
    MergeKey("order.number", "Order number", "ORD-104233"),
    MergeKey("order.date", "Order date", "12 May 2025"),
    MergeKey("refund.amount", "Refund amount", "€149.90"),
    MergeKey("refund.method", 'Refund method ("card" or "bank transfer")', "card"),
    MergeKey("refund.reason", "Reason for the refund", "The item arrived damaged."),
)

REFUND_EXAMPLE = """\
# Refund authorization

Dear {{ customer.name }},

Thank you for contacting us about your order **{{ order.number }}**. We have reviewed your \
request and we are ready to issue the refund described below. Please read this authorization, \
check that the details are correct, and sign it to confirm that you agree.

## Refund details

| Detail | Information |
| --- | --- |
| Customer | {{ customer.name }} |
| Email address | {{ customer.email }} |
| Order number | {{ order.number }} |
| Order date | {{ order.date }} |
| Refund amount | {{ refund.amount }} |
| Reason for the refund | {{ refund.reason | default("Not stated") }} |

## How you will receive your refund

{% if refund.method | trim | lower == "card" %}
We will return the refund amount to the payment card you used for this order. We normally \
send card refunds within **5 business days** of receiving your signed authorization. Your card \
issuer may take a few more days to show the refund on your statement; that part of the timing \
is outside our control.
{% elif refund.method | trim | lower == "bank transfer" %}
We will send the refund amount by bank transfer to the account you have given us. We normally \
send transfers within **5 business days** of receiving your signed authorization. Please check \
your bank details carefully before you sign: if a payment is sent to an account number that \
was given to us incorrectly, we may not be able to recover it.
{% else %}
We will contact you at {{ customer.email }} to agree how the refund will be paid before any \
money is sent.
{% endif %}

We will send a confirmation to {{ customer.email }} when the refund has been issued.

## Before you sign

Please check that:

- your name, email address and order number above are correct;
- the refund amount is what we agreed with you;
- you have not already received a refund for the same order, for example through your bank \
or card issuer.

If anything looks wrong, please **do not sign**. Contact the person who sent it to you \
instead and we will correct the document and send you a new one.

## What you are agreeing to

By signing this authorization, you confirm that:

1. the details in this document are correct to the best of your knowledge;
2. you accept the refund amount shown above for the request described in this document;
3. if you later receive a second refund for the same order, you will let us know so that it \
can be corrected.

Nothing in this authorization limits any rights you have under applicable consumer protection \
law.

---

*Please keep a copy of this document for your records. If you have any questions, contact our \
customer service team and quote order {{ order.number }}.*
"""
