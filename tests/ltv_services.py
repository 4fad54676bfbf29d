"""A small test PKI served on 127.0.0.1: a time-stamp authority, an OCSP responder and CRLs.

Built with ``cryptography``'s x509 and OCSP builders and pyHanko's ``DummyTimeStamper``; no
network beyond loopback. ``LocalPKI`` issues

- a root and an issuing CA for the sealing certificate, whose leaf names the local OCSP
  responder (AIA) and the issuing CA's CRL (CRL distribution point), and whose issuing CA
  names the root's CRL;
- a separate TSA root and a TSA certificate (time stamping only) naming the TSA root's CRL;
  ``roll_tsa(days)`` replaces the TSA certificate, as a TSA does before its certificate expires.

Every request is counted per path (``hits``), so tests can see what was fetched.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID
from pyhanko.sign.timestamps import DummyTimeStamper

from tests.test_seal import key_usage, name


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class Authority:
    """A certificate with its key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class LocalPKI:
    base: str = ""
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    hits: Counter[str] = field(default_factory=Counter)
    revoked: set[int] = field(default_factory=set)
    issued: dict[int, tuple[x509.Certificate, Authority]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # paths answered with 503

    def setup(self, base: str, tsa_days: int) -> None:
        self.base = base
        self.root = self._issue("Local Root CA", None, ca=True, days=3650)
        self.issuing = self._issue("Local Issuing CA", self.root, ca=True, days=3000, crl="root")
        self.seal = self._issue(
            "Acme Ltd document seal", self.issuing, ca=False, days=1000, crl="issuing", ocsp=True
        )
        self.tsa_root = self._issue("Local TSA Root", None, ca=True, days=3650)
        self.roll_tsa(tsa_days)

    def _issue(
        self,
        subject: str,
        issuer: Authority | None,
        *,
        ca: bool,
        days: int,
        crl: str | None = None,
        ocsp: bool = False,
        tsa: bool = False,
    ) -> Authority:
        # pyHanko's DummyTimeStamper signs with RSA only.
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if tsa
            else ec.generate_private_key(ec.SECP256R1())
        )
        issuer_name = issuer.cert.subject if issuer else name(subject)
        signing_key = issuer.key if issuer else key
        if ca:
            usage = key_usage(key_cert_sign=True, crl_sign=True)
        elif tsa:
            usage = key_usage(digital_signature=True)
        else:
            usage = key_usage(digital_signature=True, content_commitment=True)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=1))
            .not_valid_after(self.now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                critical=False,
            )
        )
        if tsa:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        if crl:
            point = x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(f"{self.base}/crl/{crl}.crl")],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        if ocsp:
            access = x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(f"{self.base}/ocsp"),
            )
            builder = builder.add_extension(
                x509.AuthorityInformationAccess([access]), critical=False
            )
        cert = builder.sign(signing_key, hashes.SHA256())
        made = Authority(cert, key)
        if issuer is not None:
            self.issued[cert.serial_number] = (cert, issuer)
        return made

    # ------------------------------------------------------------------ the TSA

    def roll_tsa(self, days: int) -> None:
        """A new TSA certificate valid for ``days`` days (the TSA's answers use it from now)."""
        self.tsa = self._issue("Local TSA", self.tsa_root, ca=False, days=days, crl="tsa", tsa=True)
        key_der = self.tsa.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.stamper = DummyTimeStamper(
            tsa_cert=asn1_x509.Certificate.load(_der(self.tsa.cert)),
            tsa_key=asn1_keys.PrivateKeyInfo.load(key_der),
            certs_to_embed=[asn1_x509.Certificate.load(_der(self.tsa_root.cert))],
        )

    # ------------------------------------------------------------------ answers

    def crl(self, name: str) -> bytes:
        authority = {"root": self.root, "issuing": self.issuing, "tsa": self.tsa_root}[name]
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(authority.cert.subject)
            .last_update(datetime.now(UTC) - timedelta(minutes=5))
            .next_update(datetime.now(UTC) + timedelta(days=7))
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
                critical=False,
            )
        )
        for serial in self.revoked:
            _cert, issuer = self.issued[serial]
            if issuer is authority:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(serial)
                    .revocation_date(datetime.now(UTC) - timedelta(minutes=1))
                    .build()
                )
        return builder.sign(authority.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp(self, body: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(body)
        known = self.issued.get(request.serial_number)
        if known is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(serialization.Encoding.DER)
        cert, issuer = known
        revoked = request.serial_number in self.revoked
        now = datetime.now(UTC)
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert,
            issuer=issuer.cert,
            algorithm=request.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now - timedelta(minutes=1),
            next_update=now + timedelta(days=1),
            revocation_time=now - timedelta(minutes=1) if revoked else None,
            revocation_reason=None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
        return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def timestamp(self, body: bytes) -> bytes:
        return bytes(self.stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump())

    # ------------------------------------------------------------------ files

    def seal_p12(self, path: Path, password: bytes = b"seal-pass") -> Path:
        """The sealing certificate with its key and chain, as the portal is configured."""
        path.write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"seal",
                self.seal.key,
                self.seal.cert,
                [self.issuing.cert, self.root.cert],
                serialization.BestAvailableEncryption(password),
            )
        )
        return path

    @property
    def tsa_url(self) -> str:
        return f"{self.base}/tsa"

    def trust_roots(self) -> list[asn1_x509.Certificate]:
        return [asn1_x509.Certificate.load(_der(c.cert)) for c in (self.root, self.tsa_root)]


@contextmanager
def local_pki(tsa_days: int = 120) -> Iterator[LocalPKI]:
    """A ``LocalPKI`` with its TSA, OCSP responder and CRLs on 127.0.0.1 while in use."""
    pki = LocalPKI()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            pki.hits[self.path] += 1
            if self.path in pki.down:
                self.send_error(503)
                return
            name = self.path.removeprefix("/crl/").removesuffix(".crl")
            if self.path.startswith("/crl/") and name in ("root", "issuing", "tsa"):
                self._answer(pki.crl(name), "application/pkix-crl")
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            pki.hits[self.path] += 1
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path in pki.down:
                self.send_error(503)
            elif self.path == "/tsa":
                self._answer(pki.timestamp(body), "application/timestamp-reply")
            elif self.path == "/ocsp":
                self._answer(pki.ocsp(body), "application/ocsp-response")
            else:
                self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    pki.setup(f"http://127.0.0.1:{server.server_address[1]}", tsa_days)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield pki
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
