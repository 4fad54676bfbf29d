"""The organisation's document seal: its identity, applying a PAdES seal, checking a seal.

Pure module: no database, no Flask. The identity is kept as ``cryptography`` objects; the
``asn1crypto`` forms that pyHanko needs are converted once per identity and cached on it,
together with the pyHanko signer.

Sealing (``seal_pdf``) adds a PAdES B-B signature (SubFilter ETSI.CAdES.detached, SHA-256)
as an incremental update over the whole file, or PAdES B-T when a time-stamp authority
(RFC 3161, over HTTP) is configured. The space for the signature is reserved from the
certificate sizes, so pyHanko signs in one pass (no dry-run signature, no second TSA call).

Errors: everything ``seal_pdf`` raises on purpose is a ``SealingError`` with a sentence a
person can act on. ``SealingCertError`` (also a ``ValueError``) is the subclass for problems
with the certificate itself (a bad PKCS#12 file, an expired certificate, a key that does
not match); a failing time-stamp service or an unreadable input PDF is a plain
``SealingError``.

Checking (``check_seal``) is about integrity, not identity: a self-signed development
certificate is fine, and who sealed is reported as the SHA-256 fingerprint of the signing
certificate, for the caller to compare with its own. "intact" means that the last signature
is cryptographically valid and that no byte of the file can have changed since: every byte
is either covered by the signature's /ByteRange or is the signature's own hex string, which
must be exact DER, written in one hex case and padded with zeros, and whose parts that the
signature itself does not cover (versions, algorithm lists, content type, certificates,
unsigned attributes, recursively inside a time-stamp token) must be exactly what a correct
signer writes, with the certificates forming the signer's chain. Strictness has a price: a
foreign signature with indefinite-length (BER) encoding is checked without the DER rules,
and a foreign one with extra certificates, unsigned attributes other than a signature
time-stamp, or odd encodings reads as "modified". One residual gap: a CA certificate at
the top of the embedded chain whose own issuer is not embedded cannot be checked (its key
is, through the certificate below it).

``check_seal`` never raises. pyHanko runs its own event loop (``asyncio.run``):
``seal_pdf`` must be called from synchronous code (a request or a job); ``check_seal``
moves to a worker thread when it finds itself inside a running event loop.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property, lru_cache
from typing import TYPE_CHECKING, Literal

from asn1crypto import cms, core
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# pyHanko (about 40 MB of memory once imported) is imported by the functions that seal or
# check a seal, not with this module: a process that never does (an export worker, the
# web app serving other pages) never loads it. The sandbox's fork server preloads it.
if TYPE_CHECKING:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.signers import PdfSignatureMetadata, SimpleSigner
    from pyhanko.sign.timestamps import HTTPTimeStamper
    from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

log = logging.getLogger(__name__)

PrivateKey = pkcs12.PKCS12PrivateKeyTypes

EXPIRY_WARNING_DAYS = 30
DEFAULT_TSA_TIMEOUT = 10.0  # seconds, for connecting to and hearing back from the TSA
MIN_RSA_BITS = 2048

_DEV_SUFFIX = " document seal (development)"
_NAME_LIMIT = 64  # X.520 upper bound for CN and O
# Signature space (DER bytes) beyond the certificates: signed attributes, algorithm
# identifiers and the signature value (512 bytes for RSA-4096), with room to spare.
_CMS_OVERHEAD = 3072
# An RFC 3161 token carries the TSA's own signature and usually its certificate chain.
_TSA_ALLOWANCE = 16384
_PDF_HEADER_WINDOW = 1024
_LOOKS_SIGNED = re.compile(rb"/ByteRange\s*\[\s*\d+\s+\d+\s+\d+\s+\d+\s*\]")
# Extended key usages that PDF readers accept for document signatures.
_SIGNING_EKUS = {
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ExtendedKeyUsageOID.CODE_SIGNING,
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning (RFC 9336)
    x509.ObjectIdentifier("1.2.840.113583.1.1.5"),  # Adobe Authentic Documents Trust
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),  # Microsoft document signing
}


class SealingError(Exception):
    """Sealing did not happen; the message says why and what to do, in plain words."""


class SealingCertError(SealingError, ValueError):
    """The sealing certificate or its PKCS#12 file is not usable; the message says what is
    wrong and what to do."""


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class SealingIdentity:
    """The organisation's sealing certificate, its private key and any intermediates."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def not_before(self) -> datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    @cached_property
    def self_signed(self) -> bool:
        if self.cert.issuer != self.cert.subject:
            return False
        try:
            self.cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return False
        return True

    @cached_property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @cached_property
    def key_matches(self) -> bool:
        """Whether the private key belongs to the certificate (a PKCS#12 file can pair a
        key with someone else's certificate)."""
        try:
            cert_public = self.cert.public_key()
        except (ValueError, UnsupportedAlgorithm):
            return False
        return _spki(self.key.public_key()) == _spki(cert_public)

    @cached_property
    def _signer(self) -> SimpleSigner:
        """The pyHanko signer, built once per identity from converted asn1crypto objects."""
        from pyhanko_certvalidator.registry import SimpleCertificateStore

        key_der = self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        chain = [_asn1_cert(cert) for cert in self.chain]
        return _loaded_key_signer()(
            self.key,
            signing_cert=_asn1_cert(self.cert),
            signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
            cert_registry=SimpleCertificateStore.from_certs(chain),
        )

    @cached_property
    def _reserve(self) -> int:
        """Hex digits to reserve for a seal without a time-stamp (bytes_reserved)."""
        certs = sum(len(c.public_bytes(serialization.Encoding.DER)) for c in self._all_certs)
        return 2 * (certs + _CMS_OVERHEAD)

    @property
    def _all_certs(self) -> tuple[x509.Certificate, ...]:
        return (self.cert, *self.chain)

    @cached_property
    def _asn1_chain(self) -> list[asn1_x509.Certificate]:
        return [_asn1_cert(cert) for cert in self._all_certs]

    @cached_property
    def _key_usage(self) -> set[str]:
        """The key usage pyHanko is to require of the certificate: one it has."""
        try:
            usage = self.cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except (x509.ExtensionNotFound, ValueError):
            return set()
        if usage.content_commitment:
            return {"non_repudiation"}
        return {"digital_signature"} if usage.digital_signature else set()


@cache
def _loaded_key_signer() -> Callable[..., SimpleSigner]:
    """The class below (made on first use: it subclasses pyHanko's signer)."""
    _load_pyhanko()
    from pyhanko.sign.signers import SimpleSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore
    from pyhanko_certvalidator.util import get_pyca_cryptography_hash

    class _LoadedKeySigner(SimpleSigner):
        """pyHanko's ``SimpleSigner``, signing with the key object already in memory.

        ``SimpleSigner.sign_raw`` loads the key from DER for every signature, and loading an
        RSA key runs cryptography's key checks: about 0.15 s for RSA-3072, many times the
        rest of a seal. The common mechanisms are signed here; others go to pyHanko."""

        def __init__(
            self,
            key: PrivateKey,
            *,
            signing_cert: asn1_x509.Certificate,
            signing_key: asn1_keys.PrivateKeyInfo,
            cert_registry: SimpleCertificateStore,
        ) -> None:
            super().__init__(
                signing_cert=signing_cert, signing_key=signing_key, cert_registry=cert_registry
            )
            self._key = key

        def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
            mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
            key = self._key
            if mechanism == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPrivateKey):
                return key.sign(data, PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))
            if mechanism == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
                return key.sign(data, ec.ECDSA(get_pyca_cryptography_hash(digest_algorithm)))
            if mechanism in {"ed25519", "ed448"} and isinstance(
                key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
            ):
                return key.sign(data)
            return bytes(super().sign_raw(data, digest_algorithm))

    return _LoadedKeySigner


def _spki(public_key: object) -> bytes:
    encode = getattr(public_key, "public_bytes", None)
    if encode is None:
        return b""
    return bytes(
        encode(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _name_value(text: str, limit: int = _NAME_LIMIT) -> str:
    """``text`` shortened to ``limit`` bytes of UTF-8 (the X.520 bound cryptography checks)."""
    if len(text.encode()) <= limit:
        return text
    while len(text.encode()) > limit - 3:
        text = text[:-1]
    return text.rstrip() + "…"


def generate_self_signed(organisation: str, *, now: datetime, days: int = 3650) -> SealingIdentity:
    """A development sealing identity: EC P-256 key, self-signed, valid from an hour before
    ``now`` for ``days`` days. It proves a file is unchanged, not who sealed it."""
    organisation = " ".join(organisation.split())
    if not organisation:
        raise SealingCertError("Enter the organisation's name to create a sealing certificate.")
    if days < 1:
        raise SealingCertError("A sealing certificate must be valid for at least one day.")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    org = _name_value(organisation)
    common_name = _name_value(organisation, _NAME_LIMIT - len(_DEV_SUFFIX)) + _DEV_SUFFIX
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return SealingIdentity(key=key, cert=cert, chain=())


def to_pkcs12(identity: SealingIdentity, password: bytes) -> bytes:
    """The identity as a PKCS#12 file, encrypted with ``password`` (empty: unencrypted)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        name=b"document seal",
        key=identity.key,
        cert=identity.cert,
        cas=list(identity.chain) or None,
        encryption_algorithm=encryption,
    )


def load_pkcs12(data: bytes, password: bytes | None) -> SealingIdentity:
    """Read a PKCS#12 file (.p12/.pfx) holding the sealing key, its certificate and any
    intermediates. Raises ``SealingCertError`` with a plain message when it cannot.

    The last few loads are cached: decrypting the file and checking an RSA key takes
    0.1-0.2 s, and the same identity object keeps its prepared pyHanko signer."""
    return _load_pkcs12(bytes(data), password)


@lru_cache(maxsize=4)
def _load_pkcs12(data: bytes, password: bytes | None) -> SealingIdentity:
    if not data:
        raise SealingCertError("The certificate file is empty. Choose the .p12 or .pfx file.")
    if data.lstrip()[:11] == b"-----BEGIN ":
        raise SealingCertError(
            "This is a PEM file, not a PKCS#12 file. Export the certificate together with its "
            "private key as a .p12 or .pfx file (for example with "
            "`openssl pkcs12 -export`) and upload that."
        )
    # A file saved "without a password" may be unencrypted or use an empty password.
    attempts: list[bytes | None] = [password] if password else [None, b""]
    loaded: pkcs12.PKCS12KeyAndCertificates | None = None
    for attempt in attempts:
        try:
            loaded = pkcs12.load_pkcs12(data, attempt)
            break
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    if loaded is None:
        if not _is_pkcs12_structure(data):
            raise SealingCertError(
                "This file is not a PKCS#12 certificate file (.p12 or .pfx). Export the "
                "sealing certificate with its private key as PKCS#12 and upload that file."
            )
        if password:
            raise SealingCertError(
                "The password for the certificate file is wrong, or the file is damaged. "
                "Check the password and try again."
            )
        raise SealingCertError(
            "The certificate file is protected by a password. Enter its password."
        )
    key = loaded.key
    certs = [c.certificate for c in loaded.additional_certs]
    cert = loaded.cert.certificate if loaded.cert is not None else None
    if key is None:
        raise SealingCertError(
            "The certificate file has no private key, so it cannot seal documents. Export "
            "the certificate together with its private key."
        )
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | dsa.DSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise SealingCertError(
            "The certificate file holds a kind of key that cannot sign documents. Use an "
            "RSA or EC (ECDSA) key."
        )
    if cert is None:
        # Some tools do not mark which certificate goes with the key: find it by its key.
        wanted = _spki(key.public_key())
        cert = next((c for c in certs if _safe_spki(c) == wanted), None)
        if cert is None and certs:
            raise SealingCertError(
                "The private key in the certificate file does not match its certificate. "
                "Export the certificate together with its own private key."
            )
        if cert is None:
            raise SealingCertError(
                "The certificate file has a private key but no certificate. Export the "
                "certificate together with its private key."
            )
    chain = tuple(c for c in certs if c != cert)
    return SealingIdentity(key=key, cert=cert, chain=chain)


def _safe_spki(cert: x509.Certificate) -> bytes:
    try:
        return _spki(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return b""


def _is_pkcs12_structure(data: bytes) -> bool:
    """Whether ``data`` parses as a PKCS#12 PFX (so a failed load means a wrong password)."""
    from asn1crypto import pkcs12 as asn1_pkcs12

    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        return pfx["version"].native == "v3" and pfx["auth_safe"]["content_type"].native in {
            "data",
            "signed_data",
        }
    except Exception:  # asn1crypto raises many types for arbitrary bytes
        return False


def _date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def check_identity(identity: SealingIdentity, *, now: datetime) -> tuple[list[str], list[str]]:
    """(problems, warnings) about the sealing identity at ``now``. Problems stop sealing;
    warnings should be shown to an administrator."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    problems: list[str] = []
    warnings: list[str] = []
    cert = identity.cert

    if now >= identity.not_after:
        problems.append(
            f"The sealing certificate expired on {_date(identity.not_after)}. Seals made with "
            "it show as invalid: upload a renewed certificate (PKCS#12) or create a new one."
        )
    elif now < identity.not_before:
        problems.append(
            f"The sealing certificate is not valid until {_date(identity.not_before)}. Check "
            "the server's clock, or use a certificate that is already valid."
        )
    else:
        left = identity.not_after - now
        if left < timedelta(days=EXPIRY_WARNING_DAYS):
            days = left.days
            when = "today" if days == 0 else "in 1 day" if days == 1 else f"in {days} days"
            warnings.append(
                f"The sealing certificate expires {when}, on {_date(identity.not_after)}. "
                "Upload a renewed certificate before then."
            )

    if not identity.key_matches:
        problems.append(
            "The private key does not match the sealing certificate: the certificate file "
            "pairs the certificate with another key. Export the certificate together with "
            "its own private key."
        )

    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    except ValueError:
        usage = None
        problems.append(
            "The sealing certificate's extensions could not be read. Use another certificate."
        )
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        problems.append(
            "The sealing certificate's key usage does not allow signing documents (it needs "
            "digital signature or non-repudiation). Ask for a document signing certificate."
        )

    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        eku = None
    if eku is not None and not _SIGNING_EKUS.intersection(eku):
        warnings.append(
            "The sealing certificate is limited to purposes other than signing documents "
            "(extended key usage); PDF readers may reject seals made with it."
        )

    key = identity.key
    if isinstance(key, rsa.RSAPrivateKey | dsa.DSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        problems.append(
            f"The sealing key is too short ({key.key_size} bits); PDF readers do not trust "
            f"it. Use a certificate with a key of at least {MIN_RSA_BITS} bits."
        )

    try:
        hash_algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        hash_algorithm = None
    if isinstance(hash_algorithm, hashes.SHA1 | hashes.MD5):
        warnings.append(
            "The sealing certificate is signed with an outdated algorithm "
            f"({hash_algorithm.name.upper()}); ask for a renewed certificate."
        )

    if identity.self_signed:
        warnings.append(
            "The sealing certificate is self-signed: seals prove that a file has not changed, "
            "but PDF readers show the sealer's identity as unknown. In production use a "
            "certificate from a certificate authority your customers' PDF readers trust."
        )
    return problems, warnings


# --------------------------------------------------------------------------- sealing


def seal_pdf(
    pdf: bytes,
    identity: SealingIdentity,
    *,
    field_name: str,
    reason: str,
    location: str | None = None,
    contact: str | None = None,
    tsa_url: str | None = None,
    tsa_timeout: float = DEFAULT_TSA_TIMEOUT,
    long_term: bool = False,
) -> bytes:
    """Seal ``pdf`` (PAdES B-B, or B-T with ``tsa_url``) as an incremental update; with
    ``tsa_url`` and ``long_term``: PAdES B-LTA (see ``ltv``), the chain's revocation data
    fetched with ``tsa_timeout`` per request.

    Raises ``SealingCertError`` when the certificate is expired, not yet valid or does not
    match the key, and ``SealingError`` when the PDF cannot be read, the time-stamp service
    fails (after at most ``tsa_timeout`` seconds) or revocation data cannot be fetched."""
    now = datetime.now(UTC)
    if not identity.key_matches:
        raise SealingCertError(
            "The private key does not match the sealing certificate, so documents cannot be "
            "sealed. Upload the certificate together with its own private key."
        )
    if not identity.not_before <= now < identity.not_after:
        problems, _ = check_identity(identity, now=now)
        raise SealingCertError(problems[0] if problems else "The certificate is not valid now.")

    _load_pyhanko()
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError

    from portal.documents import ltv

    timestamper = None
    if tsa_url:
        # The long-term path asks the TSA from more than one event loop (pyHanko runs one per
        # step): the ``requests`` client has no session tied to a loop.
        client = ltv.timestamp_client if long_term else HTTPTimeStamper
        timestamper = client(tsa_url, timeout=tsa_timeout)
    reserve = identity._reserve + (2 * _TSA_ALLOWANCE if timestamper else 0)
    try:
        context = None
        if timestamper is not None and long_term:
            roots = ltv.chain_tops([_asn1_cert(identity.cert)], identity._asn1_chain)
            roots += ltv.tsa_trust_roots(timestamper)
            context = ltv.validation_context(roots, identity._asn1_chain, timeout=tsa_timeout)
        meta = ltv.signature_settings(
            field_name=field_name,
            reason=reason,
            location=location,
            contact=contact,
            key_usage=identity._key_usage,
            context=context,
        )
        try:
            return _sign_once(pdf, identity, meta, timestamper, reserve)
        except SigningError as exc:
            if "larger than expected" not in str(exc):
                raise
            # The reserved space was too small (an unusually large TSA answer): let pyHanko
            # measure, which costs a second pass.
            log.warning("seal: reserved signature space too small, sealing again (%s)", exc)
            return _sign_once(pdf, identity, meta, timestamper, None)
    except TimestampRequestError as exc:
        cause = exc.__cause__ or exc
        raise SealingError(
            f"The time-stamp service at {tsa_url} did not answer usefully ({cause}), so the "
            "document was not sealed. Check the time-stamp service address, or try again later."
        ) from exc
    except SigningError as exc:
        if long_term and exc.__cause__ is not None:
            raise SealingError(ltv.validation_problem(exc.__cause__)) from exc
        raise SealingError(f"The document could not be sealed: {exc}") from exc
    except PdfError as exc:
        raise SealingError(
            "The document could not be read as a PDF, so it was not sealed."
        ) from exc
    except SealingError:
        raise
    except Exception as exc:
        if not long_term:
            raise
        # pyHanko's certificate path and revocation checks (B-LT needs their data)
        log.warning("seal: long-term validation data could not be gathered", exc_info=True)
        raise SealingError(
            "The document was not sealed: the certificates' revocation data (CRL or OCSP) "
            f"could not be gathered for a long-term seal ({type(exc).__name__}: {exc}). "
            "Check that the certificate authority's CRL or OCSP service can be reached, "
            "or try again later."
        ) from exc


def _sign_once(
    pdf: bytes,
    identity: SealingIdentity,
    meta: PdfSignatureMetadata,
    timestamper: HTTPTimeStamper | None,
    reserve: int | None,
) -> bytes:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _sign_here(pdf, identity, meta, timestamper, reserve)
    # Called where an event loop already runs (e.g. next to a sync Playwright session in the
    # tests): pyHanko runs a loop of its own, so sign on a worker thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_sign_here, pdf, identity, meta, timestamper, reserve).result()


def _sign_here(
    pdf: bytes,
    identity: SealingIdentity,
    meta: PdfSignatureMetadata,
    timestamper: HTTPTimeStamper | None,
    reserve: int | None,
) -> bytes:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign.signers import sign_pdf

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    if writer.prev.encrypted:
        raise SealingError(
            "The document is password-protected, so it cannot be sealed. Upload it without "
            "a password."
        )
    out = sign_pdf(writer, meta, identity._signer, timestamper=timestamper, bytes_reserved=reserve)
    return bytes(out.getvalue())


# --------------------------------------------------------------------------- checking

Outcome = Literal["intact", "modified", "unsigned", "unreadable"]


@dataclass(frozen=True)
class SealCheck:
    outcome: Outcome
    signer_fingerprint: str | None
    signed_at: datetime | None
    field_name: str | None
    detail: str


_MSG_INTACT = "The seal is intact: the file has not changed since it was sealed."
_MSG_DIGEST = "The file was changed after it was sealed: its content no longer matches the seal."
_MSG_APPENDED = "The file was changed after it was sealed (an incremental update was added)."
_MSG_SIGNATURE = "The seal's signature is damaged or does not verify."
_MSG_GAP = "The seal's signature data in the file was altered after sealing."
_MSG_DAMAGED = (
    "The file looks like a sealed PDF, but its seal could not be read: it was damaged or "
    "changed after it was sealed."
)
_MSG_UNSIGNED = "The file has no seal."
_MSG_NOT_PDF = "The file is not a PDF."
_MSG_UNREADABLE = "The file could not be read as a PDF."

_quiet_pyhanko: ContextVar[bool] = ContextVar("seal_quiet_pyhanko", default=False)


class _QuietPyHanko(logging.Filter):
    """Drop pyHanko's warnings (an untrusted certificate logs a whole traceback) while this
    module checks a seal; trust is not what ``check_seal`` decides."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or not _quiet_pyhanko.get()


@cache
def _load_pyhanko() -> None:
    """Import the pyHanko modules this module uses (once, on first use) and quieten their
    loggers."""
    import pyhanko_certvalidator  # noqa: F401

    quiet = _QuietPyHanko()
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("pyhanko") and isinstance(logger, logging.Logger):
            logger.addFilter(quiet)


@contextmanager
def _quiet() -> Iterator[None]:
    token = _quiet_pyhanko.set(True)
    try:
        yield
    finally:
        _quiet_pyhanko.reset(token)


def check_seal(pdf: bytes) -> SealCheck:
    """Whether ``pdf`` carries a seal and is unchanged since; never raises."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _check_seal_quietly(pdf)
    # Called from async code: pyHanko's validation runs an event loop of its own, which
    # cannot start inside a running one; give it a thread (this call still blocks).
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_check_seal_quietly, pdf).result()


def _check_seal_quietly(pdf: bytes) -> SealCheck:
    _load_pyhanko()
    with _quiet():
        try:
            return _check_seal(pdf)
        except Exception:  # any input bytes: the answer is a verdict, not an exception
            log.debug("seal check failed", exc_info=True)
            return _damaged(pdf)


def _result(
    outcome: Outcome,
    detail: str,
    sig: EmbeddedPdfSignature | None = None,
) -> SealCheck:
    fingerprint = signed_at = field_name = None
    if sig is not None:
        try:
            fingerprint = hashlib.sha256(sig.signer_cert.dump()).hexdigest()
        except Exception:  # a signature without (readable) certificates
            fingerprint = None
        try:
            signed_at = sig.self_reported_timestamp
        except Exception:  # a malformed signing-time attribute or /M date
            signed_at = None
        field_name = str(sig.field_name) if sig.field_name else None
    return SealCheck(outcome, fingerprint, signed_at, field_name, detail)


def _looks_signed(pdf: bytes) -> bool:
    return _LOOKS_SIGNED.search(pdf) is not None


def _damaged(pdf: bytes) -> SealCheck:
    if b"%PDF-" in pdf[:_PDF_HEADER_WINDOW] and _looks_signed(pdf):
        return _result("modified", _MSG_DAMAGED)
    return _result("unreadable", _MSG_UNREADABLE)


def _open(pdf: bytes) -> PdfFileReader | None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    for strict in (True, False):
        try:
            reader = PdfFileReader(io.BytesIO(pdf), strict=strict)
            reader.root  # noqa: B018  (resolves the catalogue: fails early on broken files)
            return reader
        except Exception:  # pyHanko raises many types for damaged files
            log.debug("seal check: cannot open the PDF (strict=%s)", strict, exc_info=True)
    return None


def _check_seal(pdf: bytes) -> SealCheck:
    if not pdf.strip():
        return _result("unreadable", "The file is empty.")
    if b"%PDF-" not in pdf[:_PDF_HEADER_WINDOW]:
        return _result("unreadable", _MSG_NOT_PDF)
    from pyhanko.pdf_utils.crypt import AuthStatus
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    reader = _open(pdf)
    if reader is None:
        return _damaged(pdf)
    if reader.encrypted:
        try:
            opened = reader.decrypt(b"").status != AuthStatus.FAILED
        except Exception:  # an unsupported security handler
            opened = False
        if not opened:
            return _result(
                "unreadable", "The file is password-protected, so its seal cannot be checked."
            )

    try:
        signatures = reader.embedded_regular_signatures
    except Exception:  # a signature whose dictionary or CMS data cannot be parsed
        return _damaged(pdf)
    if not signatures:
        if _looks_signed(pdf):
            return _result("modified", _MSG_DAMAGED)
        return _result("unsigned", _MSG_UNSIGNED)

    sig = signatures[-1]
    # Archive timestamps (B-LTA and its renewals) come after the seal, each with the
    # validation data of the one before: the seal then covers its own revision only.
    archive = [t for t in reader.embedded_timestamp_signatures
               if t.signed_revision > sig.signed_revision]  # fmt: skip
    try:
        trusted = [sig.signer_cert, *sig.other_embedded_certs]
        context = ValidationContext(trust_roots=trusted, allow_fetching=False)
        status = validate_pdf_signature(sig, context, skip_diff=not archive)
    except Exception:
        log.debug("seal check: signature could not be validated", exc_info=True)
        return _result("modified", _MSG_SIGNATURE, sig)

    if not status.intact:
        return _result("modified", _MSG_DIGEST, sig)
    if not status.valid:
        return _result("modified", _MSG_SIGNATURE, sig)
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        if status.coverage == SignatureCoverageLevel.ENTIRE_REVISION:
            if not archive:
                return _result("modified", _MSG_APPENDED, sig)
            problem = _archive_problem(pdf, status, archive)
            if problem is not None:
                log.debug("seal check: archive timestamps: %s", problem)
                return _result("modified", _MSG_APPENDED, sig)
        else:
            return _result("modified", "The seal does not cover the whole file.", sig)
    for timestamp in (status.timestamp_validity, status.content_timestamp_validity):
        if timestamp is not None and not (timestamp.intact and timestamp.valid):
            return _result("modified", "The seal's time-stamp is damaged or does not verify.", sig)
    if not _signature_area_exact(pdf, sig, whole_file=not archive):
        return _result("modified", _MSG_GAP, sig)
    try:
        problem = _cms_problem(cms.ContentInfo.load(sig.pkcs7_content), content_type="data")
    except Exception as exc:  # asn1crypto and cryptography raise many types for bad DER
        problem = f"unparseable ({exc!r})"
    if problem is not None:
        log.debug("seal check: inconsistent signature data: %s", problem)
        return _result("modified", _MSG_GAP, sig)
    return _result("intact", _MSG_INTACT, sig)


def _archive_problem(pdf: bytes, status: object, archive: list[EmbeddedPdfSignature]) -> str | None:
    """Why the updates after a seal are not just archive updates, or None when they are.

    The seal's own difference analysis (``status``) has judged every later revision: only
    validation data in the DSS and document timestamps are allowed. pyHanko writes the last
    timestamp's own validation data in a DSS update after it, which no timestamp covers
    until the next renewal; the rest is covered and must verify."""
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation import validate_pdf_timestamp
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    level = getattr(status, "modification_level", None)
    if level is None or level > ModificationLevel.LTA_UPDATES:
        return f"modification level {level}"
    problem = _info_changed(archive[0].reader, archive[0].signed_revision - 1)
    if problem is not None:
        return problem
    for number, stamp in enumerate(archive, start=1):
        context = ValidationContext(
            trust_roots=[stamp.signer_cert, *stamp.other_embedded_certs], allow_fetching=False
        )
        checked = validate_pdf_timestamp(stamp, context, skip_diff=True)
        if not (checked.intact and checked.valid):
            return f"timestamp {number} does not verify"
        if checked.coverage not in (
            SignatureCoverageLevel.ENTIRE_FILE,
            SignatureCoverageLevel.ENTIRE_REVISION,
        ):
            return f"timestamp {number} does not cover its revision"
        whole = checked.coverage == SignatureCoverageLevel.ENTIRE_FILE
        if not _signature_area_exact(pdf, stamp, whole_file=whole):
            return f"timestamp {number}: signature area"
        problem = _cms_problem(cms.ContentInfo.load(stamp.pkcs7_content), content_type="tst_info")
        if problem is not None:
            return f"timestamp {number}: {problem}"
    return None


def _info_changed(reader: PdfFileReader, sealed_revision: int) -> str | None:
    """pyHanko's difference analysis leaves out the document information dictionary (title,
    author...), which PDF readers show: later revisions may only touch its /ModDate and
    /Producer (pyHanko's writer updates them with each DSS update and timestamp)."""
    from pyhanko.pdf_utils.generic import DictionaryObject, IndirectObject

    touched_by_writer = {"/ModDate", "/Producer"}

    def info(revision: int) -> dict[str, object]:
        resolver = reader.get_historical_resolver(revision)
        trailer = resolver.trailer_view
        if "/Info" not in trailer:
            return {}
        found = trailer.raw_get("/Info")
        if isinstance(found, IndirectObject):  # resolved as it was in that revision
            found = resolver.get_object(found.reference)
        if not isinstance(found, DictionaryObject):
            return {"": repr(found)}
        return {str(key): value for key, value in found.items() if key not in touched_by_writer}

    sealed = info(sealed_revision)
    for revision in range(sealed_revision + 1, reader.xrefs.total_revisions):
        if info(revision) != sealed:
            return f"document information changed in revision {revision}"
    return None


def _signature_area_exact(
    pdf: bytes, sig: EmbeddedPdfSignature, *, whole_file: bool = True
) -> bool:
    """The only bytes a signature does not cover are its own hex string: check that it is
    exactly the signature, hex-encoded in one case and padded with zeros, so that not even
    one byte of the file can change without the seal noticing (``whole_file``: its byte range
    must reach the end of the file; otherwise a later timestamp covers the rest)."""
    try:
        start, len1, start2, len2 = (int(v) for v in sig.byte_range)
    except (TypeError, ValueError):
        return False
    end = start2 + len2
    if start != 0 or len1 < 0 or start2 <= len1 or len2 < 0 or end > len(pdf):
        return False
    if whole_file and end != len(pdf):
        return False
    content = bytes(sig.pkcs7_content)
    der_length = _der_exact_length(content)
    if der_length is None:
        return False
    if der_length >= 0 and any(content[der_length:]):
        return False
    area = pdf[len1:start2]
    hex_upper = binascii.hexlify(content).upper()
    return area in (b"<" + hex_upper + b">", b"<" + hex_upper.lower() + b">")


def _der_exact_length(content: bytes) -> int | None:
    """Length of the DER value at the start of ``content`` when it is exact DER all the way
    down (definite, minimal lengths; every constructed value filled exactly by its parts),
    -1 for a BER value with indefinite lengths (not checked further), None otherwise."""
    try:
        return _der_walk(content, 0, len(content))
    except _IndefiniteLength:
        return -1
    except (IndexError, ValueError):
        return None


class _IndefiniteLength(Exception):
    pass


def _der_walk(data: bytes, offset: int, limit: int) -> int:
    """End offset of the DER value at ``offset``, checking its structure; raises ValueError
    (or IndexError past the end) when it is not exact DER."""
    tag = data[offset]
    if tag == 0:
        raise ValueError("zero tag")
    position = offset + 1
    if tag & 0x1F == 0x1F:  # high tag number: base-128 digits
        while data[position] & 0x80:
            position += 1
        position += 1
    first = data[position]
    position += 1
    if first == 0x80:
        raise _IndefiniteLength
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size > 4 or data[position] == 0:
            raise ValueError("length encoding")
        length = int.from_bytes(data[position : position + size], "big")
        if length < 0x80:
            raise ValueError("length not minimal")
        position += size
    end = position + length
    if end > limit:
        raise ValueError("value longer than its container")
    if tag & 0x20:  # constructed: its parts must fill it exactly
        while position < end:
            position = _der_walk(data, position, end)
    return end


# The parts of a CMS signature that its signature does not cover (versions, the digest
# algorithm list, the content type, the certificates, the unsigned attributes) must still
# be exactly what a correct signer writes: otherwise one changed byte there would go
# unnoticed. The rules are those of RFC 5652 plus "the certificates are the signer's chain".

_UNSIGNED_ALLOWED = {"data": frozenset({"signature_time_stamp_token"}), "tst_info": frozenset()}


def _cms_problem(content_info: cms.ContentInfo, *, content_type: str) -> str | None:
    """Why ``content_info`` is not a consistent CMS signature, or None when it is."""
    if content_info["content_type"].native != "signed_data":
        return "not signed data"
    signed_data = content_info["content"]
    signer_infos = list(signed_data["signer_infos"])
    if len(signer_infos) != 1:
        return "not exactly one signer"
    signer_info = signer_infos[0]
    encap = signed_data["encap_content_info"]
    if any(_has_unknown_parts(part) for part in (content_info, signed_data, encap, signer_info)):
        # asn1crypto keeps a part it does not expect (say, unsigned attributes whose tag
        # was changed) aside instead of failing.
        return "unexpected parts"
    sid = signer_info["sid"]
    signer_version = {"issuer_and_serial_number": "v1", "subject_key_identifier": "v3"}.get(
        sid.name
    )
    if signer_info["version"].native != signer_version:
        return "signer info version"

    if encap["content_type"].native != content_type:
        return "content type"
    detached = encap["content"].native is None
    if detached != (content_type == "data"):
        return "encapsulated content"

    expected_version = "v1" if signer_version == "v1" and content_type == "data" else "v3"
    if signed_data["version"].native != expected_version:
        return "signed data version"

    digest_oids = set()
    for algorithm in [*signed_data["digest_algorithms"], signer_info["digest_algorithm"]]:
        # Digest algorithms take no parameters: absent, or an explicit NULL.
        if algorithm["parameters"].dump() not in (b"", b"\x05\x00"):
            return "digest algorithm parameters"
        digest_oids.add(algorithm["algorithm"].dotted)
    signature_algorithm = signer_info["signature_algorithm"]
    if signature_algorithm["algorithm"].native != "rsassa_pss" and signature_algorithm[
        "parameters"
    ].dump() not in (b"", b"\x05\x00"):
        return "signature algorithm parameters"
    if len(digest_oids) != len(signed_data["digest_algorithms"]):
        return "digest algorithm list"

    certs: list[x509.Certificate] = []
    signer: x509.Certificate | None = None
    if signed_data["certificates"].native is not None:
        for choice in signed_data["certificates"]:
            if choice.name != "certificate":
                return "not a plain certificate"
            if choice.chosen.serial_number <= 0:
                return "certificate serial number"
            # The signature value sits outside the signed part of a certificate: its
            # BIT STRING must have no unused bits, or one changed byte would go unnoticed.
            if choice.chosen["signature_value"].contents[:1] != b"\x00":
                return "certificate signature encoding"
            cert = x509.load_der_x509_certificate(choice.chosen.dump())
            certs.append(cert)
            if signer is None and _is_signer(choice.chosen, sid):
                signer = cert
    if signer is None:
        return "signer certificate missing"
    problem = _chain_problem(signer, certs)
    if problem is not None:
        return problem

    if signed_data["crls"].native is not None:
        for choice in signed_data["crls"]:
            if choice.name != "crl":
                return "not a plain CRL"
            crl = x509.load_der_x509_crl(choice.chosen.dump())
            if not any(_crl_signed_by(crl, cert) for cert in certs):
                return "CRL signature"

    unsigned = signer_info["unsigned_attrs"]
    if unsigned.native is not None:
        for attribute in unsigned:
            kind = attribute["type"].native
            if kind not in _UNSIGNED_ALLOWED[content_type] or _has_unknown_parts(attribute):
                return f"unsigned attribute {kind}"
            for token in attribute["values"]:
                problem = _cms_problem(token, content_type="tst_info")
                if problem is not None:
                    return f"time-stamp token: {problem}"
    return None


def _has_unknown_parts(value: core.Sequence) -> bool:
    """Whether a parsed SEQUENCE holds more parts than asn1crypto matched to its fields."""
    parts = 0
    position = 0
    contents = value.contents
    try:
        while position < len(contents):
            position = _der_walk(contents, position, len(contents))
            parts += 1
    except _IndefiniteLength:  # BER from another signer: not counted
        return False
    known = sum(1 for name in value if not isinstance(value[name], core.Void))
    return parts != known


def _chain_problem(signer: x509.Certificate, certs: list[x509.Certificate]) -> str | None:
    """The certificates must be the signer's certificate followed by its issuers, each one
    verifying the one below it; a self-issued top certificate must verify itself."""
    chain = [signer]
    current = signer
    while True:
        issuer = next(
            (
                cert
                for cert in certs
                if cert not in chain
                and cert.subject == current.issuer
                and _issued_by(current, cert)
            ),
            None,
        )
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    if current.issuer == current.subject and not _issued_by(current, current):
        return "self-signed certificate does not verify"
    if current is not signer and _claims_root(current) and not _issued_by(current, current):
        # A changed byte in a root's issuer name makes it look like an intermediate whose
        # issuer is not embedded; a real intermediate names its issuer's key.
        return "root certificate does not verify"
    if any(cert not in chain for cert in certs):
        return "certificate outside the signer's chain"
    return None


def _claims_root(cert: x509.Certificate) -> bool:
    """Whether ``cert`` does not name an issuer key other than its own (as a root CA)."""
    try:
        authority = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    try:
        own = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        own = None
    return authority.key_identifier is None or authority.key_identifier == own


def _is_signer(cert: asn1_x509.Certificate, sid: cms.SignerIdentifier) -> bool:
    if sid.name == "issuer_and_serial_number":
        wanted = sid.chosen
        # Byte for byte: asn1crypto's Name equality ignores case and spacing, so a changed
        # letter in the signature's issuer name would still "match".
        return bool(
            cert.serial_number == wanted["serial_number"].native
            and cert.issuer.dump() == wanted["issuer"].dump()
        )
    return bool(cert.key_identifier == sid.chosen.native)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _crl_signed_by(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    try:
        public_key = cert.public_key()
        return crl.issuer == cert.subject and crl.is_signature_valid(public_key)  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
