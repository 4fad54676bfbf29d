"""Bulk send: one approved template to up to 10,000 customers from a CSV or XLSX file.

The agent downloads a CSV template made for the template version (``columns``), fills it and
uploads it; the file is read within limits (``reading``), its columns matched to what the
template needs (``columns``) and every row checked with the send form's rules (``checking``)
before anything is sent; ``drafts`` keeps that as a draft batch the agent can re-map, exclude
rows of, or throw away. ``sending`` is the batch job: envelopes created in chunks
(``creating``), emails paced by ``BULK_MAIL_PER_MINUTE``, resumable after a crash with no row
sent twice; ``stopping`` cancels a batch and voids what it created; ``report`` gives the
progress and the per-row outcome, on the page and as CSV.
"""
