# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Test certificates made with ``cryptography``: a CA, and what it signs.

Shared by the unit tests (a provider's answer to the charm's request) and the
workload tests (the files a real TLS server loads). Every certificate here is
made for the test that asks for it; nothing is read from disk or the network.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEM = serialization.Encoding.PEM
NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    """A P-256 key: quick to make (the charm's library makes RSA ones; Valkey serves both)."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA that signs whatever a test asks for."""

    key: PrivateKey
    certificate: x509.Certificate

    @classmethod
    def new(
        cls,
        common_name: str = 'test CA',
        *,
        not_before: datetime.datetime = NOW - HOUR,
        not_after: datetime.datetime = NOW + 30 * DAY,
        issuer: Authority | None = None,
    ) -> Authority:
        """A self-signed root CA, or an intermediate CA signed by ``issuer``."""
        key = new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(issuer.certificate.subject if issuer else _name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        )
        signer = issuer.key if issuer else key
        return cls(key, builder.sign(signer, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return pem(self.certificate)

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey | x509.CertificateSigningRequest,
        dns_names: Sequence[str],
        *,
        not_before: datetime.datetime = NOW - HOUR,
        not_after: datetime.datetime = NOW + 7 * DAY,
        ip_addresses: Sequence[str] = (),
        common_name: str = 'valkey',
    ) -> x509.Certificate:
        """A server certificate for ``dns_names``, for a key or for a CSR's key."""
        if isinstance(public_key, x509.CertificateSigningRequest):
            subject_key = public_key.public_key()
        else:
            subject_key = public_key
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(subject_key)  # pyright: ignore[reportArgumentType]
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())
