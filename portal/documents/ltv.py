"""Long-term validation of the portal's seals: PAdES B-LT / B-LTA and their renewal.

Pure module: no database, no Flask. ``seal.seal_pdf(..., long_term=True)`` asks here for the
signature settings of a B-LTA seal: the signer's chain and its revocation data (a CRL or an
OCSP answer, wherever the certificates name them) are fetched at sealing time with a bounded
timeout and written to the document security store (DSS), and a document timestamp is added
over it. ``renew`` adds a fresh document timestamp to a B-LTA file, first writing the
validation data of the previous timestamp into the DSS, so the chain of timestamps carries
the evidence past the expiry of each TSA certificate. ``describe`` reads which level a sealed
file has and when its latest timestamp's TSA certificate expires.

What is fetched is evidence, not trust: the trust anchors handed to pyHanko are the tops of
the chains the portal already holds (its own sealing certificate's chain, and the chain the
TSA sends with its answers). Revocation checking is ``hard-fail``: when a certificate names a
CRL or OCSP responder that cannot be reached, sealing fails with that reason (and is retried)
rather than producing a "long-term" seal without its revocation data.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeVar

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyhanko.sign.signers import PdfSignatureMetadata
    from pyhanko.sign.timestamps import HTTPTimeStamper
    from pyhanko_certvalidator import ValidationContext

log = logging.getLogger(__name__)

Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]
LEVELS: tuple[Level, ...] = ("B-B", "B-T", "B-LT", "B-LTA")
TIMESTAMP_FIELD = "PortalArchiveTimestamp"
_T = TypeVar("_T")


class LongTermError(Exception):
    """Long-term validation data or a timestamp could not be added; the message says why."""


@dataclass(frozen=True)
class SealLevel:
    """What a sealed file holds for long-term validation."""

    level: Level | None  # None: no seal at all
    document_timestamps: int
    timestamp_expires: datetime | None  # TSA certificate of the latest document timestamp
    timestamp_at: datetime | None  # when the latest document timestamp was made


def _asn1(cert: object) -> asn1_x509.Certificate:
    if isinstance(cert, asn1_x509.Certificate):
        return cert
    from cryptography.hazmat.primitives import serialization

    der = cert.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined]
    return asn1_x509.Certificate.load(der)


def chain_tops(
    leaves: Iterable[asn1_x509.Certificate], pool: Iterable[asn1_x509.Certificate]
) -> list[asn1_x509.Certificate]:
    """For each leaf, the highest certificate reachable through ``pool`` by issuer name (a
    self-signed root, or the last certificate whose issuer is not in the pool)."""
    by_subject: dict[bytes, asn1_x509.Certificate] = {}
    for cert in pool:
        by_subject.setdefault(cert.subject.dump(), cert)
    tops: dict[bytes, asn1_x509.Certificate] = {}
    for leaf in leaves:
        current = leaf
        for _ in range(10):  # a chain longer than this is not one we build on
            if current.self_issued:
                break
            issuer = by_subject.get(current.issuer.dump())
            if issuer is None or issuer.dump() == current.dump():
                break
            current = issuer
        tops[current.sha256] = current
    return list(tops.values())


def validation_context(
    trust_roots: Iterable[object],
    other_certs: Iterable[object] = (),
    *,
    timeout: float,
) -> ValidationContext:
    """A context that fetches CRLs and OCSP answers (each request bounded by ``timeout``)
    and fails when a certificate names a source of revocation data that does not answer."""
    from pyhanko_certvalidator import ValidationContext
    from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

    return ValidationContext(
        trust_roots=[_asn1(c) for c in trust_roots],
        other_certs=[_asn1(c) for c in other_certs],
        allow_fetching=True,
        revocation_mode="hard-fail",
        fetcher_backend=RequestsFetcherBackend(per_request_timeout=timeout),
    )


def timestamp_client(url: str, *, timeout: float) -> HTTPTimeStamper:
    """An RFC 3161 client over ``requests`` (usable from any event loop pyHanko starts)."""
    from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

    return RequestsHTTPTimeStamper(url, timeout=timeout)  # type: ignore[return-value]


def tsa_trust_roots(timestamper: HTTPTimeStamper) -> list[asn1_x509.Certificate]:
    """The tops of the chains the TSA sends (asks it for one timestamp, which pyHanko keeps
    and reuses to size the signature: no extra request later)."""
    from pyhanko.sign.timestamps.common_utils import extract_ts_certs

    token: cms.ContentInfo = _run(timestamper.async_dummy_response("sha256"))
    leaves = list(extract_ts_certs(token, timestamper.cert_registry))
    return chain_tops(leaves, timestamper.cert_registry)


def validation_problem(cause: BaseException) -> str:
    """A sentence for why the sealing certificate's chain could not be validated for a
    long-term seal (``cause``: pyHanko's certificate validation error)."""
    from pyhanko_certvalidator.errors import InsufficientRevinfoError, RevokedError

    if isinstance(cause, RevokedError):
        return (
            "The document was not sealed: the sealing certificate (or a certificate above it) "
            f"has been revoked by its certificate authority ({cause}). Upload a valid "
            "certificate."
        )
    if isinstance(cause, InsufficientRevinfoError):
        return (
            "The document was not sealed: the certificates' revocation data (CRL or OCSP) "
            f"could not be fetched for a long-term seal ({cause}). Check that the certificate "
            "authority's CRL or OCSP service can be reached; sealing is tried again."
        )
    return (
        "The document was not sealed: the sealing certificate could not be validated for a "
        f"long-term seal ({type(cause).__name__}: {cause})."
    )


def signature_settings(
    *,
    field_name: str,
    reason: str,
    location: str | None,
    contact: str | None,
    key_usage: set[str],
    context: ValidationContext | None,
) -> PdfSignatureMetadata:
    """pyHanko's signature metadata: PAdES, SHA-256, and B-LTA when ``context`` is given."""
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko.sign.signers import PdfSignatureMetadata

    return PdfSignatureMetadata(
        field_name=field_name,
        reason=reason,
        location=location,
        contact_info=contact,
        subfilter=SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        signer_key_usage=key_usage,
        embed_validation_info=context is not None,
        use_pades_lta=context is not None,
        timestamp_field_name=TIMESTAMP_FIELD if context is not None else None,
        validation_context=context,
    )


def _run(coro: object) -> _T:  # type: ignore[type-var]
    """Run a pyHanko coroutine to completion from synchronous code (a thread of its own
    when an event loop is already running here)."""

    def run() -> _T:
        return asyncio.run(coro)  # type: ignore[arg-type]

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


# --------------------------------------------------------------------------- reading


def _token_signer_cert(signed_data: cms.SignedData) -> asn1_x509.Certificate | None:
    """The certificate that signed a CMS signed-data (a timestamp token's TSA)."""
    signer_infos = list(signed_data["signer_infos"])
    if not signer_infos:
        return None
    sid = signer_infos[0]["sid"].chosen
    for choice in signed_data["certificates"] or ():
        cert = choice.chosen
        if isinstance(sid, cms.IssuerAndSerialNumber):
            if cert.issuer == sid["issuer"] and cert.serial_number == sid["serial_number"].native:
                return cert
        elif cert.key_identifier == sid.native:
            return cert
    return None


def _gen_time(signed_data: cms.SignedData) -> datetime | None:
    info = signed_data["encap_content_info"]["content"].parsed
    value = info["gen_time"].native
    return value if isinstance(value, datetime) else None


def describe(pdf: bytes) -> SealLevel:
    """The PAdES level of ``pdf``'s last seal and its latest document timestamp; raises
    ``LongTermError`` when the file cannot be read."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        regular = reader.embedded_regular_signatures
        stamps = reader.embedded_timestamp_signatures
        has_dss = "/DSS" in reader.root
    except Exception as exc:  # pyHanko raises many types for damaged files
        raise LongTermError(f"The sealed file could not be read ({exc}).") from exc
    if not regular:
        return SealLevel(None, 0, None, None)
    last = regular[-1]
    later = [s for s in stamps if s.signed_revision > last.signed_revision]
    expires = at = None
    if later:
        token = later[-1].signed_data
        cert = _token_signer_cert(token)
        expires = cert["tbs_certificate"]["validity"]["not_after"].native if cert else None
        at = _gen_time(token)
        level: Level = "B-LTA" if has_dss else "B-T"
    elif has_dss:
        level = "B-LT"
    elif last.signer_info["unsigned_attrs"].native and any(
        a["type"].native == "signature_time_stamp_token" for a in last.signer_info["unsigned_attrs"]
    ):
        level = "B-T"
    else:
        level = "B-B"
    return SealLevel(level, len(later), expires, at)


# --------------------------------------------------------------------------- renewal


def renew(pdf: bytes, timestamper: HTTPTimeStamper, *, timeout: float) -> bytes:
    """``pdf`` with the previous document timestamp's validation data in the DSS and a fresh
    document timestamp over everything; raises ``LongTermError``."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
    from pyhanko.sign.timestamps import TimestampRequestError

    try:
        reader = PdfFileReader(io.BytesIO(pdf))
        stamps = reader.embedded_timestamp_signatures
    except Exception as exc:
        raise LongTermError(f"The sealed file could not be read ({exc}).") from exc
    if not stamps:
        raise LongTermError(
            "The sealed file has no document timestamp to renew (it is not a B-LTA seal)."
        )
    try:
        previous = stamps[-1].signed_data
        previous_certs = [c.chosen for c in previous["certificates"] or ()]
        signer = _token_signer_cert(previous)
        roots = chain_tops([signer] if signer else [], previous_certs)
        roots += tsa_trust_roots(timestamper)
        context = validation_context(roots, previous_certs, timeout=timeout)
        stamper = PdfTimeStamper(timestamper, field_name=_next_field(reader))
        output = _call(
            lambda: stamper.update_archival_timestamp_chain(reader, context, in_place=False)
        )
        return bytes(output.getvalue())
    except TimestampRequestError as exc:
        cause = exc.__cause__ or exc
        raise LongTermError(f"The time-stamp service did not answer usefully ({cause}).") from exc
    except LongTermError:
        raise
    except Exception as exc:  # pyHanko: validation, fetching, writing
        log.warning("ltv: renewing the document timestamp failed", exc_info=True)
        raise LongTermError(
            f"The fresh document timestamp could not be added ({type(exc).__name__}: {exc})."
        ) from exc


def _next_field(reader: object) -> str:
    """A new field name for each renewal's timestamp (PortalArchiveTimestamp2, 3, ...)."""
    count = len(reader.embedded_timestamp_signatures)  # type: ignore[attr-defined]
    return f"{TIMESTAMP_FIELD}{count + 1}"


def _call(work: Callable[[], _T]) -> _T:
    """Run pyHanko's synchronous wrappers (which start event loops of their own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()
