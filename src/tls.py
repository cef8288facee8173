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

Each certificate the unit serves lives in a directory of its own
(``workload.config.TlsMaterial``), so a renewal changes the paths in the
file: the file changes, and the running server loads the new files with one
``CONFIG SET``. Directories no file names any more are removed once the
server runs the new file, and all of them when the relation goes.

Renewal is part of the same reconcile: once :data:`RENEWAL_POINT` of the
certificate's validity has passed (the library gives its secret that expiry,
so Juju sends ``secret-expired`` then; ``update-status`` catches it too), the
library asks for a new one with the same key, and the unit serves the
current one until the provider answers.

What the provider sends is checked before anything is written: a certificate
without the names above, expired or not yet valid, not matching this unit's
key, or not signed by the CA it came with changes nothing (the unit keeps
serving what it served) and gets a status that says so. Valkey itself refuses
an expired certificate (valkey-io/valkey#2999): a server restarted on one
would not start at all.

The library (with cryptography and pydantic) is imported only in hooks where
the ``certificates`` relation exists: the others never pay for it. It is
made during the hook, so its own event observers never run; this charm's one
reconcile path calls its ``sync()`` instead, on every event.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import ops

from workload.config import TlsMaterial
from workload.container import installed_tls

if TYPE_CHECKING:
    from charmlibs.interfaces.tls_certificates import (
        CertificateRequestAttributes,
        TLSCertificatesRequiresV4,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

logger = logging.getLogger(__name__)

ENDPOINT: Final = 'certificates'
RENEWAL_POINT: Final = 0.9
"""Ask for a new certificate once this fraction of the current one's validity has passed.

The library's own default (``renewal_relative_time``): it gives the secret
holding the certificate that expiry, and Juju sends ``secret-expired`` then."""
_LIBRARY_SECRETS: Final = 'afd8c2bccf834997afce12c2706d2ede-'
"""How the library's secret labels start (its LIBID): this unit's key and certificates."""


@dataclasses.dataclass(frozen=True)
class Encryption:
    """What this unit serves over TLS from now on, and what stands in the way of better."""

    material: TlsMaterial | None
    """The certificate, CA and key to serve; ``None``: plaintext."""
    problem: ops.StatusBase | None = None
    """Why the unit does not serve the provider's current certificate, for collect-status."""


def reconcile(charm: ops.CharmBase, container: ops.Container, unit_address: str) -> Encryption:
    """Ask for this unit's certificate, and say what the unit should serve (any unit).

    No relation: plaintext. With it: the provider's certificate for this unit
    once it has signed one that passes :func:`validate`; until then, and
    whenever its answer cannot be used, whatever the unit served before
    (plaintext at first; the last good certificate later), with a status
    that says why.
    """
    relation = charm.model.get_relation(ENDPOINT)
    if relation is None:
        return Encryption(None)
    provider = relation.app.name
    names = names_for(unit_address, charm.app.name, charm.model.name)
    now = _now()
    try:
        offered = _offered(charm, names, provider, now)
    except ops.ModelError as e:
        # Juju refused a secret or relation-data call: the next event retries.
        logger.warning('Could not read or write the %s relation: %s', ENDPOINT, type(e).__name__)
        offered = ops.WaitingStatus(
            f'{ENDPOINT}: Juju refused a call ({type(e).__name__}); retrying'
        )
    if isinstance(offered, TlsMaterial):
        return Encryption(offered)
    served = installed_tls(container) if container.can_connect() else None
    if served is None:
        return Encryption(None, offered)
    expires = expiry(served.certificate_chain)
    if isinstance(offered, ops.WaitingStatus) and now < expires:
        # A renewal (or a first answer) on its way; the current one still serves.
        logger.info(
            'Serving the current certificate (expires %s): %s', _day(expires), offered.message
        )
        return Encryption(served)
    kept = f'{offered.message}; serving the previous certificate (expires {_day(expires)})'
    return Encryption(served, type(offered)(kept))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def forget_private_key(charm: ops.CharmBase) -> None:
    """Remove this unit's private key secret: the ``certificates`` relation is gone.

    The library does the same in its own ``relation-broken`` handler; this
    charm makes the library only in hooks that need it, so it asks here.
    """
    requirer = _requirer(charm, (common_name(charm.unit.name),))
    secret_id = requirer.get_private_key_secret_id()
    if secret_id is not None:
        charm.model.get_secret(id=secret_id).remove_all_revisions()
        logger.info("Removed this unit's TLS private key")


def owns_secret(label: str | None) -> bool:
    """Whether a secret is one the library made for this unit (its key, its certificates)."""
    return label is not None and label.startswith(_LIBRARY_SECRETS)


def _offered(
    charm: ops.CharmBase, names: Sequence[str], provider: str, now: datetime.datetime
) -> TlsMaterial | ops.StatusBase:
    """The provider's certificate for this unit, checked; or why there is none to serve."""
    request = _request(charm.unit.name, names)
    requirer = _requirer(charm, names, request)
    # The key (made once, kept in a secret of this unit), the request in this
    # unit's databag, the certificate read back: what the library does on its events.
    requirer.sync()
    key = requirer.private_key
    assigned, _ = requirer.get_assigned_certificate(request)
    if assigned is not None and key is not None:
        checked = validate(
            certificate=str(assigned.certificate),
            chain=[str(c) for c in assigned.chain],
            ca=str(assigned.ca),
            private_key=str(key),
            names=names,
            now=now,
        )
        if isinstance(checked, str):
            return ops.BlockedStatus(f'{ENDPOINT}: {checked}; ask {provider} for a new one')
        start, end = assigned.certificate.validity_start_time, assigned.certificate.expiry_time
        if renewal_due(start, end, now):
            # The library asks anew with the same key; this one serves until the answer.
            requirer.renew_certificate(assigned)
            logger.info('Asked %s to renew the certificate (expires %s)', provider, _day(end))
        return checked
    mine = {
        str(r.certificate_signing_request) for r in requirer.get_csrs_from_requirer_relation_data()
    }
    for refused in requirer.get_request_errors():
        if str(refused.certificate_signing_request) in mine:
            return ops.BlockedStatus(
                f"{ENDPOINT}: {provider} refused this unit's request: {refused.error.message}"
            )
    for answer in requirer.get_provider_certificates():
        if str(answer.certificate_signing_request) in mine and key is not None:
            # The library set it aside: say why, in the same words as any other.
            checked = validate(
                certificate=str(answer.certificate),
                chain=[str(c) for c in answer.chain],
                ca=str(answer.ca),
                private_key=str(key),
                names=names,
                now=now,
            )
            why = checked if isinstance(checked, str) else 'the certificate is a CA certificate'
            return ops.BlockedStatus(f'{ENDPOINT}: {why}; ask {provider} for a new one')
    return ops.WaitingStatus(f"{ENDPOINT}: waiting for {provider} to sign this unit's certificate")


def _request(unit_name: str, names: Sequence[str]) -> CertificateRequestAttributes:
    from charmlibs.interfaces.tls_certificates import CertificateRequestAttributes  # noqa: PLC0415

    return CertificateRequestAttributes(common_name=common_name(unit_name), sans_dns=names)


def _requirer(
    charm: ops.CharmBase,
    names: Sequence[str],
    request: CertificateRequestAttributes | None = None,
) -> TLSCertificatesRequiresV4:
    """The library's requirer, made during the hook: its own observers never run.

    Made in ``__init__`` it would observe events (and cost its import) in every
    hook; made here, its observers are registered after the event was
    dispatched, and this charm's one reconcile path calls ``sync()`` instead.
    """
    from charmlibs.interfaces.tls_certificates import (  # noqa: PLC0415
        Mode,
        TLSCertificatesRequiresV4,
    )

    requests = [request or _request(charm.unit.name, names)]
    # Unit mode: each unit its own key, request and certificate. Not leader-only.
    return TLSCertificatesRequiresV4(
        charm, ENDPOINT, certificate_requests=requests, mode=Mode.UNIT
    )


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


def renewal_due(
    not_before: datetime.datetime, not_after: datetime.datetime, now: datetime.datetime
) -> bool:
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
) -> TlsMaterial | str:
    """What to serve, or why the provider's answer cannot be served (for a status).

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
    return TlsMaterial(
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
