# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Encrypted connections: ``juju integrate valkey-leader-k8s <certificates provider>``.

The ``certificates`` endpoint speaks ``tls-certificates`` through the
``charmlibs-interfaces-tls-certificates`` package (the v4 library), in its
unit mode: every unit generates its own private key (kept in a secret this
unit owns), asks for its own certificate in its own unit databag, and serves
what the provider signs. Nothing here is the leader's job, and nothing here
changes when leadership moves:

* The certificate names the unit's stable DNS name (replicas and the charm's
  handover reach a unit by it) and every name of the ``<app>-primary`` Service
  (short, namespaced, cluster FQDN). Whichever unit the Service selects after
  a leadership change already holds a certificate for the address clients
  use: no new request, no restart.
* Turning TLS on or off, and every renewal, is a change of the rendered file
  like any other: the charm applies it to the running server live.

Each certificate the unit serves lives in a directory of its own under
:data:`TLS_DIR`, named after the certificate (never after the key), so a
renewal changes the paths in the file: the file changes, and the running
server loads the new files with one ``CONFIG SET``. Directories no file
refers to any more are removed once the server runs the new one.

What the provider sends is checked before anything is written: a certificate
without the names above, expired or not yet valid, not matching this unit's
key, or not signed by the CA it came with changes nothing (the unit keeps
serving what it served) and gets a status that says so. Valkey itself refuses
an expired certificate (valkey-io/valkey#2999): a server restarted on one
would not start at all.

The library (with cryptography and pydantic) is imported only in hooks where
the ``certificates`` relation exists: the others never pay for it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

ENDPOINT: Final = 'certificates'
TLS_DIR: Final = '/run/valkey/tls'
"""Beside the config file, outside the data volume: a key is never in a storage snapshot."""
CERT_FILE: Final = 'cert.pem'
KEY_FILE: Final = 'key.pem'
CA_FILE: Final = 'ca.pem'
RENEWAL_POINT: Final = 0.9
"""Ask for a new certificate once this fraction of the current one's validity has passed.

The library's own default (``renewal_relative_time``): the expiry it gives the
certificate's secret, which makes Juju send ``secret-expired`` then."""


def primary_service_names(app_name: str, model_name: str) -> tuple[str, ...]:
    """The names clients reach ``<app>-primary`` by: short, namespaced, cluster FQDN."""
    service = f'{app_name}-primary'
    return (service, f'{service}.{model_name}', f'{service}.{model_name}.svc.cluster.local')


def names_for(unit_address: str, app_name: str, model_name: str) -> tuple[str, ...]:
    """Every DNS name this unit's certificate must hold.

    ``unit_address`` is the unit's stable DNS name (``leadership.unit_address``).
    The Service's names are on every unit's certificate, not only the leader's:
    the Service moves to the new leader's pod, and the certificate is there already.
    """
    return (unit_address, *primary_service_names(app_name, model_name))


def common_name(unit_name: str) -> str:
    """The subject's common name: the pod's name (a CN holds at most 64 characters).

    Clients check the DNS names above, never the CN (RFC 6125, section 6.4.4).
    """
    return unit_name.replace('/', '-')[:64]


@dataclasses.dataclass(frozen=True)
class Bundle:
    """What one unit serves: its certificate (with intermediates), the CA, and its key."""

    certificate_chain: str
    """PEM: the unit's certificate first, then each intermediate up to (not including) the CA."""
    ca: str
    """PEM: the CA certificate clients and replicas verify the chain with."""
    private_key: str = dataclasses.field(repr=False)
    """PEM: the unit's private key. Never logged, never in a status or in the Pebble plan."""

    @property
    def directory(self) -> str:
        """Where the files go: named after the certificate and the CA, never the key."""
        digest = hashlib.sha256(f'{self.certificate_chain}\n{self.ca}'.encode()).hexdigest()
        return f'{TLS_DIR}/{digest[:16]}'


def renewal_due(not_before: datetime.datetime, not_after: datetime.datetime, now: datetime.datetime) -> bool:
    """Whether :data:`RENEWAL_POINT` of the certificate's validity has passed."""
    return now >= not_before + (not_after - not_before) * RENEWAL_POINT


def validate(
    *,
    certificate: str,
    chain: Sequence[str],
    ca: str,
    private_key: str,
    names: Sequence[str],
    now: datetime.datetime,
) -> Bundle | str:
    """The bundle to serve, or why the provider's answer cannot be served (for a status).

    Args:
        certificate: the unit's certificate (PEM), as the provider sent it.
        chain: the chain the provider sent with it (PEM each), in any order;
            it may repeat the certificate and the CA.
        ca: the CA certificate (PEM) the provider sent with it.
        private_key: this unit's private key (PEM); it appears in no message.
        names: the DNS names the certificate must hold (:func:`names_for`).
        now: the time to check validity at.
    """
    # Imported here: only a hook with the relation gets this far (see the module docstring).
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        leaf = x509.load_pem_x509_certificate(certificate.encode())
        authority = x509.load_pem_x509_certificate(ca.encode())
        others = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain]
    except ValueError:
        return 'the certificate or its CA is not a PEM certificate'
    try:
        key = serialization.load_pem_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError):
        return "this unit's private key cannot be read"
    for what, cert in (('the certificate', leaf), ('its CA', authority)):
        if now < cert.not_valid_before_utc:
            return f'{what} is not valid before {_day(cert.not_valid_before_utc)}'
        if now >= cert.not_valid_after_utc:
            return f'{what} expired on {_day(cert.not_valid_after_utc)}'
    missing = [name for name in names if not _covers(_dns_names(leaf), name)]
    if missing:
        return f'the certificate lacks the name {missing[0]}' + (
            f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
        )
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        return "the certificate does not match this unit's private key"
    path = _path_to(authority, leaf, [c for c in others if c not in (leaf, authority)])
    if path is None:
        return 'the certificate is not signed by the CA sent with it'
    pem = serialization.Encoding.PEM
    return Bundle(
        certificate_chain=''.join(c.public_bytes(pem).decode() for c in path),
        ca=authority.public_bytes(pem).decode(),
        private_key=private_key,
    )


def expiry(certificate_chain: str) -> datetime.datetime:
    """When the first certificate of a PEM chain expires."""
    from cryptography import x509  # noqa: PLC0415

    return x509.load_pem_x509_certificate(certificate_chain.encode()).not_valid_after_utc


def _day(moment: datetime.datetime) -> str:
    return moment.strftime('%Y-%m-%d %H:%M UTC')


def _dns_names(cert: x509.Certificate) -> list[str]:
    from cryptography import x509  # noqa: PLC0415

    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in extension.value.get_values_for_type(x509.DNSName)]


def _covers(dns_names: Sequence[str], name: str) -> bool:
    """Whether a certificate with ``dns_names`` is valid for ``name`` (one-label wildcards too)."""
    name = name.lower()
    if name in dns_names:
        return True
    _, _, parent = name.partition('.')
    return bool(parent) and f'*.{parent}' in dns_names


def _public_der(public_key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _path_to(
    authority: x509.Certificate, leaf: x509.Certificate, intermediates: list[x509.Certificate]
) -> list[x509.Certificate] | None:
    """``[leaf, intermediate, ...]`` up to a certificate ``authority`` signed directly; or None."""
    path = [leaf]
    candidates = list(intermediates)
    while not _issued_by(path[-1], authority):
        issuer = next((c for c in candidates if _issued_by(path[-1], c)), None)
        if issuer is None:
            return None
        candidates.remove(issuer)
        path.append(issuer)
    return path


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography import exceptions  # noqa: PLC0415

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, exceptions.InvalidSignature):
        return False
    return True
