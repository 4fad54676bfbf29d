"""The document seal: sealing identity, PAdES sealing, and checking a seal.

No app, no database: PDFs come from reportlab, certificates from ``cryptography`` (a
self-signed development seal, and a small test CA), time-stamps from a local TSA served
on 127.0.0.1 by pyHanko's ``DummyTimeStamper``. ``pdfsig`` (poppler) checks the seals
independently of pyHanko.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from asn1crypto import keys as asn1_keys
from asn1crypto import pkcs12 as asn1_pkcs12
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import SigFieldSpec, append_signature_field
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader, PdfWriter
from reportlab.pdfgen import canvas

from portal.documents.seal import (
    SealCheck,
    SealingCertError,
    SealingError,
    SealingIdentity,
    check_identity,
    check_seal,
    generate_self_signed,
    load_pkcs12,
    seal_pdf,
    to_pkcs12,
)

NOW = datetime.now(UTC).replace(microsecond=0)
FIELD = "PortalSeal"
PDFSIG = shutil.which("pdfsig")


# --------------------------------------------------------------------------- helpers


def make_pdf(pages: int = 3) -> bytes:
    """Uncompressed page content, so tests can find (and change) the text in the file."""
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pageCompression=0)
    for number in range(1, pages + 1):
        for line in range(20):
            pdf.drawString(72, 760 - 18 * line, f"Page {number} line {line}: agreed terms")
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


def seal(pdf: bytes, identity: SealingIdentity, **kwargs: str) -> bytes:
    return seal_pdf(pdf, identity, field_name=FIELD, reason="Sealed by Acme Ltd", **kwargs)


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA Ltd"),
        ]
    )


def key_usage(**flags: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def issue(
    subject: str,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    issuer_name: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    ca: bool,
    usage: x509.KeyUsage | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    days: int = 365,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            usage
            or (
                key_usage(key_cert_sign=True, crl_sign=True)
                if ca
                else key_usage(digital_signature=True, content_commitment=True)
            ),
            critical=True,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=True)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
    )
    if issuer_name != name(subject):
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class SmallCA:
    root: x509.Certificate
    intermediate: x509.Certificate
    identity: SealingIdentity  # the leaf, with (intermediate, root) as its chain


def make_ca() -> SmallCA:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = issue("Test Root CA", root_key.public_key(), name("Test Root CA"), root_key, ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = issue("Test Issuing CA", inter_key.public_key(), root.subject, root_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue(
        "Acme Ltd document seal", leaf_key.public_key(), inter.subject, inter_key, ca=False
    )
    p12 = pkcs12.serialize_key_and_certificates(
        b"seal", leaf_key, leaf, [inter, root], serialization.BestAvailableEncryption(b"pw")
    )
    return SmallCA(root, inter, load_pkcs12(p12, b"pw"))


def pdfsig(tmp_path: Path, pdf: bytes) -> str:
    assert PDFSIG is not None, "pdfsig is missing: install poppler-utils (see the Makefile)"
    path = tmp_path / "sealed.pdf"
    path.write_bytes(pdf)
    run = subprocess.run(
        [PDFSIG, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return run.stdout + run.stderr


def embedded_signature(pdf: bytes) -> EmbeddedPdfSignature:
    return PdfFileReader(io.BytesIO(pdf)).embedded_signatures[-1]


def cms_cert_fingerprints(pdf: bytes) -> set[str]:
    signed_data = embedded_signature(pdf).signed_data
    return {hashes_hex(choice.chosen.dump()) for choice in signed_data["certificates"]}


def hashes_hex(der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def flip(pdf: bytes, position: int, mask: int = 0x01) -> bytes:
    changed = bytearray(pdf)
    changed[position] ^= mask
    return bytes(changed)


def contents_area(pdf: bytes) -> tuple[int, int]:
    """Start and end (exclusive) of the signature's hex string, from its /ByteRange."""
    byte_range = embedded_signature(pdf).byte_range
    return int(byte_range[1]), int(byte_range[2])


# --------------------------------------------------------------------------- local TSA


@pytest.fixture(scope="module")
def tsa_url() -> Iterator[str]:
    """An RFC 3161 time-stamp authority on 127.0.0.1 (pyHanko's DummyTimeStamper)."""
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa_cert = issue(
        "Test TSA",
        tsa_key.public_key(),
        name("Test TSA"),
        tsa_key,
        ca=False,
        usage=key_usage(digital_signature=True),
        eku=[ExtendedKeyUsageOID.TIME_STAMPING],
    )
    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(tsa_cert.public_bytes(serialization.Encoding.DER)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(
            tsa_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tsa"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def identity() -> SealingIdentity:
    return generate_self_signed("Acme Ltd", now=NOW)


@pytest.fixture(scope="module")
def original() -> bytes:
    return make_pdf(10)


@pytest.fixture(scope="module")
def sealed(original: bytes, identity: SealingIdentity) -> bytes:
    return seal(original, identity, location="Warsaw", contact="seal@example.com")


@pytest.fixture(scope="module")
def ca() -> SmallCA:
    return make_ca()


# --------------------------------------------------------------------------- identity


def test_generated_identity(identity: SealingIdentity) -> None:
    assert identity.subject == "O=Acme Ltd,CN=Acme Ltd document seal (development)"
    assert identity.self_signed
    assert identity.chain == ()
    assert identity.not_before == NOW - timedelta(hours=1)
    assert identity.not_after == NOW + timedelta(days=3650)
    assert identity.not_after.tzinfo is not None
    assert isinstance(identity.key, ec.EllipticCurvePrivateKey)
    assert identity.fingerprint == identity.cert.fingerprint(hashes.SHA256()).hex()
    assert len(identity.fingerprint) == 64
    usage = identity.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    constraints = identity.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False


def test_long_organisation_name_fits_the_certificate() -> None:
    identity = generate_self_signed("A" * 200, now=NOW)
    common_name = identity.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert len(common_name) <= 64
    assert str(common_name).endswith("document seal (development)")


def test_generate_rejects_blank_organisation() -> None:
    with pytest.raises(SealingCertError, match="organisation"):
        generate_self_signed("  ", now=NOW)


def test_pkcs12_round_trip(identity: SealingIdentity) -> None:
    data = to_pkcs12(identity, b"correct horse")
    loaded = load_pkcs12(data, b"correct horse")
    assert loaded.fingerprint == identity.fingerprint
    assert loaded.cert == identity.cert
    assert loaded.chain == ()
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert loaded.key.public_key().public_bytes(
        der, spki
    ) == identity.key.public_key().public_bytes(der, spki)
    assert check_identity(loaded, now=NOW)[0] == []


def test_pkcs12_without_password(identity: SealingIdentity) -> None:
    assert load_pkcs12(to_pkcs12(identity, b""), None).fingerprint == identity.fingerprint


def test_pkcs12_wrong_password(identity: SealingIdentity) -> None:
    data = to_pkcs12(identity, b"right")
    with pytest.raises(SealingCertError, match=r"password .* is wrong"):
        load_pkcs12(data, b"wrong")
    with pytest.raises(SealingCertError, match="protected by a password"):
        load_pkcs12(data, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (os.urandom(2048), "not a PKCS#12"),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "not a PKCS#12"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "PEM file"),
    ],
)
def test_not_a_pkcs12(data: bytes, message: str) -> None:
    with pytest.raises(SealingCertError, match=message) as raised:
        load_pkcs12(data, b"pw")
    assert isinstance(raised.value, ValueError)


def test_pkcs12_without_key_or_certificate(identity: SealingIdentity) -> None:
    encryption = serialization.BestAvailableEncryption(b"pw")
    certs_only = pkcs12.serialize_key_and_certificates(
        b"x", None, None, [identity.cert], encryption
    )
    with pytest.raises(SealingCertError, match="no private key"):
        load_pkcs12(certs_only, b"pw")
    key_only = pkcs12.serialize_key_and_certificates(b"x", identity.key, None, None, encryption)
    with pytest.raises(SealingCertError, match="no certificate"):
        load_pkcs12(key_only, b"pw")


def test_check_identity_fine(identity: SealingIdentity) -> None:
    problems, warnings = check_identity(identity, now=NOW)
    assert problems == []
    # The development certificate says plainly what it does and does not prove.
    assert len(warnings) == 1 and "self-signed" in warnings[0]


def test_check_identity_expired() -> None:
    old = generate_self_signed("Acme Ltd", now=NOW - timedelta(days=400), days=365)
    problems, _ = check_identity(old, now=NOW)
    expired_on = (NOW - timedelta(days=35)).strftime("%Y-%m-%d")
    assert len(problems) == 1
    assert f"The sealing certificate expired on {expired_on}" in problems[0]


def test_check_identity_not_yet_valid() -> None:
    future = generate_self_signed("Acme Ltd", now=NOW + timedelta(days=3))
    problems, _ = check_identity(future, now=NOW)
    assert len(problems) == 1 and "not valid until" in problems[0]


def test_check_identity_expiring_soon() -> None:
    soon = generate_self_signed("Acme Ltd", now=NOW, days=10)
    problems, warnings = check_identity(soon, now=NOW)
    assert problems == []
    date = (NOW + timedelta(days=10)).strftime("%Y-%m-%d")
    assert any(f"expires in 10 days, on {date}" in warning for warning in warnings)
    problems, warnings = check_identity(soon, now=NOW - timedelta(days=25))
    assert not any("expires" in warning for warning in warnings)


def mismatched_pkcs12(key_from: SealingIdentity, cert_from: SealingIdentity) -> bytes:
    """A PKCS#12 file pairing one identity's key with another's certificate. cryptography
    refuses to write one, so the certificate is swapped in the file's own structure."""
    good = pkcs12.serialize_key_and_certificates(
        b"x", key_from.key, key_from.cert, None, serialization.NoEncryption()
    )
    swapped_cert = asn1_x509.Certificate.load(
        cert_from.cert.public_bytes(serialization.Encoding.DER)
    )
    contents = []
    for safe in asn1_pkcs12.Pfx.load(good).authenticated_safe:
        bags = []
        for bag in asn1_pkcs12.SafeContents.load(safe["content"].native):
            if bag["bag_id"].native == "cert_bag":
                bag = asn1_pkcs12.SafeBag(
                    {
                        "bag_id": "cert_bag",
                        "bag_value": asn1_pkcs12.CertBag(
                            {"cert_id": "x509", "cert_value": swapped_cert}
                        ),
                        "bag_attributes": bag["bag_attributes"],  # same localKeyId as the key
                    }
                )
            bags.append(bag)
        contents.append(
            cms.ContentInfo(
                {"content_type": "data", "content": asn1_pkcs12.SafeContents(bags).dump()}
            )
        )
    return asn1_pkcs12.Pfx(
        {
            "version": "v3",
            "auth_safe": cms.ContentInfo(
                {"content_type": "data", "content": asn1_pkcs12.AuthenticatedSafe(contents).dump()}
            ),
        }
    ).dump()


def test_pkcs12_with_key_of_another_certificate(identity: SealingIdentity) -> None:
    other = generate_self_signed("Acme Ltd", now=NOW)
    with pytest.raises(SealingCertError, match="does not match its certificate"):
        load_pkcs12(mismatched_pkcs12(other, identity), None)


def test_check_identity_key_mismatch(identity: SealingIdentity, original: bytes) -> None:
    other = generate_self_signed("Acme Ltd", now=NOW)
    mixed = SealingIdentity(key=other.key, cert=identity.cert, chain=())
    problems, _ = check_identity(mixed, now=NOW)
    assert len(problems) == 1 and "private key does not match" in problems[0]
    with pytest.raises(SealingCertError, match="does not match"):
        seal(original, mixed)


def test_check_identity_key_usage_without_signing() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(
        "Encryption only",
        key.public_key(),
        name("Encryption only"),
        key,
        ca=False,
        usage=key_usage(key_agreement=True),
    )
    problems, _ = check_identity(SealingIdentity(key=key, cert=cert, chain=()), now=NOW)
    assert len(problems) == 1 and "key usage does not allow signing" in problems[0]


def test_check_identity_short_rsa_key_and_foreign_eku() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = issue(
        "Old server",
        key.public_key(),
        name("Old server"),
        key,
        ca=False,
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    problems, warnings = check_identity(SealingIdentity(key=key, cert=cert, chain=()), now=NOW)
    assert any("too short (1024 bits)" in problem for problem in problems)
    assert any("extended key usage" in warning for warning in warnings)


def test_seal_refuses_expired_certificate(original: bytes) -> None:
    old = generate_self_signed("Acme Ltd", now=NOW - timedelta(days=400), days=365)
    with pytest.raises(SealingCertError, match="expired on"):
        seal(original, old)


# --------------------------------------------------------------------------- sealing


def test_sealed_document_is_intact(sealed: bytes, identity: SealingIdentity) -> None:
    result = check_seal(sealed)
    assert result.outcome == "intact", result.detail
    assert result.signer_fingerprint == identity.fingerprint
    assert result.field_name == FIELD
    assert result.signed_at is not None
    assert abs(result.signed_at - datetime.now(UTC)) < timedelta(minutes=10)
    assert "intact" in result.detail


def test_sealed_document_validates_in_pyhanko(sealed: bytes, identity: SealingIdentity) -> None:
    signature = embedded_signature(sealed)
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert signature.sig_object["/Reason"] == "Sealed by Acme Ltd"
    assert signature.sig_object["/Location"] == "Warsaw"
    assert signature.sig_object["/ContactInfo"] == "seal@example.com"
    assert signature.md_algorithm == "sha256"
    context = ValidationContext(
        trust_roots=[
            asn1_x509.Certificate.load(identity.cert.public_bytes(serialization.Encoding.DER))
        ],
        allow_fetching=False,
    )
    status = validate_pdf_signature(signature, context)
    assert status.intact and status.valid and status.trusted
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE


def test_sealed_document_passes_pdfsig(sealed: bytes, tmp_path: Path) -> None:
    report = pdfsig(tmp_path, sealed)
    assert "Signature is Valid" in report, report
    assert "Total document signed" in report, report
    assert "ETSI.CAdES.detached" in report


def test_sealed_document_keeps_pages_and_text(original: bytes, sealed: bytes) -> None:
    assert sealed.startswith(original)  # an incremental update: the original bytes stay
    reader = PdfReader(io.BytesIO(sealed))
    assert len(reader.pages) == 10
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text()
        assert f"Page {number} line 0: agreed terms" in text
        assert f"Page {number} line 19: agreed terms" in text


def test_second_seal_with_another_field(sealed: bytes, identity: SealingIdentity) -> None:
    twice = seal_pdf(sealed, identity, field_name="SecondSeal", reason="Again")
    result = check_seal(twice)
    assert result.outcome == "intact" and result.field_name == "SecondSeal"


def test_seal_into_existing_filled_field_fails(sealed: bytes, identity: SealingIdentity) -> None:
    with pytest.raises(SealingError):
        seal(sealed, identity)


def test_seal_rejects_unreadable_and_encrypted_pdfs(
    original: bytes, identity: SealingIdentity
) -> None:
    with pytest.raises(SealingError, match="could not be read"):
        seal(b"this is not a PDF at all", identity)
    with pytest.raises(SealingError, match="password"):
        seal(encrypt(original, "secret"), identity)


def test_ca_issued_identity(ca: SmallCA, original: bytes, tmp_path: Path) -> None:
    identity = ca.identity
    assert not identity.self_signed
    assert identity.chain == (ca.intermediate, ca.root)
    assert identity.subject == "O=Test CA Ltd,CN=Acme Ltd document seal"
    problems, warnings = check_identity(identity, now=NOW)
    assert problems == [] and warnings == []

    sealed = seal(original, identity)
    result = check_seal(sealed)
    assert result.outcome == "intact", result.detail
    assert result.signer_fingerprint == identity.fingerprint
    assert cms_cert_fingerprints(sealed) == {
        cert.fingerprint(hashes.SHA256()).hex() for cert in (identity.cert, *identity.chain)
    }
    report = pdfsig(tmp_path, sealed)
    assert "Signature is Valid" in report, report

    root = asn1_x509.Certificate.load(ca.root.public_bytes(serialization.Encoding.DER))
    status = validate_pdf_signature(
        embedded_signature(sealed), ValidationContext(trust_roots=[root], allow_fetching=False)
    )
    assert status.intact and status.valid and status.trusted  # the chain builds to the root


def test_rsa_identity(original: bytes, tmp_path: Path) -> None:
    """CA-issued sealing certificates are often RSA (signed with the key object in memory,
    not reloaded by pyHanko for every seal)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue("Acme Ltd RSA seal", key.public_key(), name("Acme Ltd RSA seal"), key, ca=False)
    identity = load_pkcs12(
        pkcs12.serialize_key_and_certificates(
            b"seal", key, cert, None, serialization.BestAvailableEncryption(b"pw")
        ),
        b"pw",
    )
    sealed = seal(original, identity)
    result = check_seal(sealed)
    assert result.outcome == "intact" and result.signer_fingerprint == identity.fingerprint
    assert embedded_signature(sealed).signer_info["signature_algorithm"].signature_algo == (
        "rsassa_pkcs1v15"
    )
    assert "Signature is Valid" in pdfsig(tmp_path, sealed)


def test_ca_issued_identity_without_root(ca: SmallCA, original: bytes) -> None:
    """CAs often hand out the leaf and its intermediates only."""
    identity = SealingIdentity(key=ca.identity.key, cert=ca.identity.cert, chain=(ca.intermediate,))
    sealed = seal(original, identity)
    assert check_seal(sealed).outcome == "intact"
    assert len(cms_cert_fingerprints(sealed)) == 2


def test_ca_issued_identity_round_trips_with_chain(ca: SmallCA) -> None:
    again = load_pkcs12(to_pkcs12(ca.identity, b"pw"), b"pw")
    assert again.fingerprint == ca.identity.fingerprint
    assert set(again.chain) == {ca.intermediate, ca.root}


def test_timestamped_seal(
    original: bytes, identity: SealingIdentity, tsa_url: str, tmp_path: Path
) -> None:
    sealed = seal(original, identity, tsa_url=tsa_url)
    result = check_seal(sealed)
    assert result.outcome == "intact", result.detail
    signature = embedded_signature(sealed)
    unsigned = [attr["type"].native for attr in signature.signer_info["unsigned_attrs"]]
    assert unsigned == ["signature_time_stamp_token"]
    status = validate_pdf_signature(signature, ValidationContext(allow_fetching=False))
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.intact and status.timestamp_validity.valid
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    report = pdfsig(tmp_path, sealed)
    assert "Signature is Valid" in report, report


def test_unreachable_tsa_fails_fast(original: bytes, identity: SealingIdentity) -> None:
    url = f"http://127.0.0.1:{closed_port()}/tsa"
    started = time.monotonic()
    with pytest.raises(SealingError, match="time-stamp service") as raised:
        seal_pdf(original, identity, field_name=FIELD, reason="r", tsa_url=url, tsa_timeout=2)
    assert time.monotonic() - started < 5
    assert url in str(raised.value)
    assert not isinstance(raised.value, SealingCertError)


def test_silent_tsa_times_out(original: bytes, identity: SealingIdentity) -> None:
    # A TSA that accepts the connection and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/tsa"
        started = time.monotonic()
        with pytest.raises(SealingError, match="time-stamp service"):
            seal_pdf(original, identity, field_name=FIELD, reason="r", tsa_url=url, tsa_timeout=0.5)
        assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- checking


def test_unsigned_pdf(original: bytes) -> None:
    result = check_seal(original)
    assert result == SealCheck("unsigned", None, None, None, result.detail)


def test_pdf_with_empty_signature_field_is_unsigned(original: bytes) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(original))
    append_signature_field(writer, SigFieldSpec(sig_field_name="Empty"))
    out = io.BytesIO()
    writer.write(out)
    assert check_seal(out.getvalue()).outcome == "unsigned"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        os.urandom(4096),
        b"%PDF-1.7\n" + os.urandom(4096),
        b"%PDF-1.7\n%%EOF\n",
        b"GIF89a" + os.urandom(100),
    ],
    ids=["empty", "blank", "random", "pdf-header-then-random", "header-only", "gif"],
)
def test_garbage_is_unreadable(data: bytes) -> None:
    result = check_seal(data)
    assert result.outcome == "unreadable"
    assert result.signer_fingerprint is None and result.detail


def test_truncated_sealed_file(sealed: bytes) -> None:
    for length in (len(sealed) // 2, len(sealed) - 300, len(sealed) - 10, len(sealed) - 1):
        assert check_seal(sealed[:length]).outcome in {"unreadable", "modified"}, length


def encrypt(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_pdf(original: bytes) -> None:
    locked = check_seal(encrypt(original, "secret"))
    assert locked.outcome == "unreadable" and "password" in locked.detail
    # An empty user password opens in every reader: read it like any other file.
    assert check_seal(encrypt(original, "")).outcome == "unsigned"


def test_check_inside_a_running_event_loop(sealed: bytes) -> None:
    async def check() -> SealCheck:
        return check_seal(sealed)

    assert asyncio.run(check()).outcome == "intact"


def test_incremental_update_after_seal_is_modified(
    sealed: bytes, identity: SealingIdentity
) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(sealed))
    writer.root["/Lang"] = generic.TextStringObject("en")
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    updated = out.getvalue()
    assert updated.startswith(sealed) and len(updated) > len(sealed)
    result = check_seal(updated)
    assert result.outcome == "modified"
    assert "incremental update" in result.detail
    assert result.signer_fingerprint == identity.fingerprint
    assert result.field_name == FIELD


def test_appended_bytes_after_seal_are_modified(sealed: bytes) -> None:
    assert check_seal(sealed + b"\n").outcome == "modified"
    assert check_seal(sealed + b"%%EOF\n").outcome == "modified"


def test_pypdf_incremental_append_is_modified(sealed: bytes) -> None:
    writer = PdfWriter(io.BytesIO(sealed), incremental=True)
    writer.add_metadata({"/Title": "Changed"})
    out = io.BytesIO()
    writer.write(out)
    assert check_seal(out.getvalue()).outcome == "modified"


def test_changed_text_is_modified(sealed: bytes) -> None:
    position = sealed.index(b"(Page 7 line 3: agreed terms)") + len(b"(Page 7 line 3: ")
    for changed in (flip(sealed, position), flip(sealed, position, 0x20)):
        result = check_seal(changed)
        assert result.outcome == "modified", result.detail
        assert "no longer matches" in result.detail


def test_changed_content_stream_operator_is_modified(sealed: bytes) -> None:
    position = sealed.index(b"72 742 Tm") + 1  # text position in a page content stream
    assert check_seal(flip(sealed, position)).outcome == "modified"


def test_changed_bytes_in_signature_contents(sealed: bytes) -> None:
    start, end = contents_area(sealed)
    hex_text = sealed[start + 1 : end - 1]
    der_digits = len(hex_text.rstrip(b"0"))
    positions = {
        "signature data": start + 1 + der_digits // 2,
        "signature value": start + der_digits - 4,
        "zero padding": end - 10,
        "opening bracket": start,
        "closing bracket": end - 1,
    }
    for label, position in positions.items():
        for mask in (0x01, 0x02, 0x08):
            assert check_seal(flip(sealed, position, mask)).outcome in {
                "modified",
                "unreadable",
            }, label
    # Upper-case hex letter turned lower case: the same signature bytes, still a change.
    letter = next(i for i in range(start + 1, end) if sealed[i : i + 1] in b"ABCDEF")
    assert check_seal(flip(sealed, letter, 0x20)).outcome == "modified"


def test_changed_bytes_in_structure(sealed: bytes) -> None:
    first_xref = sealed.index(b"\nxref\n")
    last_xref = sealed.rindex(b"\nxref\n")
    trailer = sealed.rindex(b"trailer")
    positions = {
        "first xref table": first_xref + 30,
        "last xref table": last_xref + 40,
        "trailer /Size": sealed.index(b"/Size", trailer) + 6,
        "trailer key": trailer + 12,
        "startxref": sealed.rindex(b"startxref") + 11,
        "%%EOF": sealed.rindex(b"%%EOF") + 2,
        "header": 5,
        "/ByteRange": sealed.index(b"/ByteRange") + 14,
        "/M date": sealed.index(b"/M (D") + 10,
        "/Reason": sealed.index(b"/Reason") + 10,
    }
    for label, position in positions.items():
        for mask in (0x01, 0x04):
            result = check_seal(flip(sealed, position, mask))
            assert result.outcome in {"modified", "unreadable"}, (label, result)


def test_one_changed_byte_anywhere_is_never_intact(sealed: bytes) -> None:
    """A sample of positions across the whole file (and many inside the signature)."""
    start, end = contents_area(sealed)
    der_end = start + 1 + len(sealed[start + 1 : end - 1].rstrip(b"0"))
    rng = random.Random(20260101)  # a fixed sample
    positions = set(range(0, len(sealed), max(1, len(sealed) // 90)))
    positions |= set(rng.sample(range(start, der_end + 8), 90))
    for position in sorted(positions):
        for mask in (0x01, 0x04):
            result = check_seal(flip(sealed, position, mask))
            assert result.outcome != "intact", (position, sealed[position - 8 : position + 8])


def test_check_ca_seal_with_changed_chain_certificate(ca: SmallCA, original: bytes) -> None:
    """The chain certificates are not covered by the signature itself; changing one must
    still be noticed."""
    sealed = seal(original, ca.identity)
    start, end = contents_area(sealed)
    for cert in (ca.intermediate, ca.root):
        der_hex = cert.public_bytes(serialization.Encoding.DER).hex().upper().encode()
        offset = sealed.index(der_hex, start, end)
        for delta in (40, len(der_hex) // 2, len(der_hex) - 20):
            changed = flip(sealed, offset + delta)
            assert check_seal(changed).outcome in {"modified", "unreadable"}, (cert.subject, delta)


def test_check_is_quiet(
    original: bytes, identity: SealingIdentity, tsa_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """pyHanko logs a traceback for the test TSA's untrusted certificate; check_seal is
    about integrity and keeps pyHanko's warnings out of the log while it checks."""
    sealed = seal(original, identity, tsa_url=tsa_url)
    with caplog.at_level(logging.DEBUG):
        assert check_seal(sealed).outcome == "intact"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_signature_was_made_over_the_whole_original(sealed: bytes, original: bytes) -> None:
    """The ByteRange covers everything except the signature's own hex string."""
    byte_range = [int(v) for v in embedded_signature(sealed).byte_range]
    assert byte_range[0] == 0
    assert byte_range[2] + byte_range[3] == len(sealed)
    assert byte_range[1] > len(original)  # the seal's signature dictionary is in the update
    content_info = cms.ContentInfo.load(embedded_signature(sealed).pkcs7_content)
    assert content_info["content_type"].native == "signed_data"
