# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""TLS through the ``certificates`` relation: each unit its own certificate, nothing leader-only.

Every test drives the charm the way Juju would: the first run makes the
unit's key and certificate request (the library's work, in the unit's own
databag and secret); the test then signs that exact request with a test CA
and puts the answer where a provider would (its application databag); the
next run serves it. What the charm wrote is read back from the unit's
directories behind the container's mounts.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import stat
from pathlib import Path
from typing import Final

import ops
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from ops import testing

import tls
from leadership import unit_address
from workload import client
from workload.config import TLS_DIR, TlsMaterial

from ..certificates import DAY, HOUR, NOW, PEM, Authority, key_pem, new_key, pem
from .conftest import (
    APP,
    FakeChoice,
    FakeLive,
    UnitFilesystem,
    make_container,
    make_context,
    make_filesystem,
    make_peer_relation,
    unit_name,
)

PROVIDER: Final = 'self-signed-certificates'
RELATION_ID: Final = 30
MODEL: Final = testing.Model(name='prod')


def names(unit_id: int) -> tuple[str, ...]:
    return tls.names_for(unit_address(unit_name(unit_id), APP, MODEL.name), APP, MODEL.name)


def certificates_relation(
    provider_data: dict[str, str] | None = None, unit_data: dict[str, str] | None = None
) -> testing.Relation:
    return testing.Relation(
        tls.ENDPOINT,
        id=RELATION_ID,
        remote_app_name=PROVIDER,
        remote_app_data=dict(provider_data or {}),
        local_unit_data=dict(unit_data or {}),
    )


@dataclasses.dataclass
class Unit:
    """One unit's charm, its directories, and its state between hooks."""

    unit_id: int
    fs: UnitFilesystem
    ctx: testing.Context[ops.CharmBase]
    state: testing.State

    def run(self, event: testing.CharmEvents | None = None) -> testing.State:
        relation = self.state.get_relation(RELATION_ID) if self.relation else None
        chosen = event or (
            self.ctx.on.relation_changed(relation)
            if isinstance(relation, testing.Relation)
            else self.ctx.on.update_status()
        )
        self.state = self.ctx.run(chosen, self.state)  # pyright: ignore[reportArgumentType]
        return self.state

    @property
    def relation(self) -> testing.Relation | None:
        found = [r for r in self.state.relations if r.endpoint == tls.ENDPOINT]
        return found[0] if found and isinstance(found[0], testing.Relation) else None

    def request(self) -> x509.CertificateSigningRequest:
        """The CSR this unit put in its databag (the library's work)."""
        assert self.relation is not None
        (entry,) = json.loads(self.relation.local_unit_data['certificate_signing_requests'])
        return x509.load_pem_x509_csr(entry['certificate_signing_request'].encode())

    def answer(self, provider_data: dict[str, str]) -> None:
        """The provider wrote its application databag: the unit's next input."""
        assert self.relation is not None
        relation = dataclasses.replace(self.relation, remote_app_data=provider_data)
        others = {r for r in self.state.relations if r.endpoint != tls.ENDPOINT}
        self.state = dataclasses.replace(self.state, relations={*others, relation})

    def tls_dirs(self) -> list[Path]:
        root = self.fs.config_dir / 'tls'
        return sorted(root.iterdir()) if root.exists() else []

    def config(self) -> str:
        return self.fs.read_config()


def make_unit(tmp_path: Path, unit_id: int = 0, *, leader: bool = True) -> Unit:
    """A unit with a certificates relation: the leader, or a follower of unit 0 (published)."""
    fs = make_filesystem(tmp_path, unit_id)
    peers, secrets = make_peer_relation(unit_id), frozenset[testing.Secret]()
    if not leader:
        # What the leader (unit 0) published: the follower's input.
        leader_fs = make_filesystem(tmp_path / 'leader', 0)
        leader_state = testing.State(
            leader=True,
            model=MODEL,
            relations={make_peer_relation(0)},
            containers={make_container(leader_fs)},
        )
        published = make_context(tmp_path / 'leader').run(
            make_context(tmp_path / 'leader').on.leader_elected(), leader_state
        )
        peers = make_peer_relation(
            unit_id, app_data=dict(published.get_relations('valkey-peers')[0].local_app_data)
        )
        secrets = published.secrets
    state = testing.State(
        leader=leader,
        model=MODEL,
        relations={peers, certificates_relation()},
        secrets=secrets,
        containers={make_container(fs)},
    )
    return Unit(unit_id, fs, make_context(tmp_path, unit_id), state)  # pyright: ignore[reportArgumentType]


def signed(
    unit: Unit,
    authority: Authority,
    *,
    dns_names: tuple[str, ...] | None = None,
    not_before: datetime.datetime = NOW - HOUR,
    not_after: datetime.datetime = NOW + 7 * DAY,
    ca: Authority | None = None,
    key_of: x509.CertificateSigningRequest | None = None,
) -> dict[str, str]:
    """The provider's databag answering ``unit``'s request (optionally wrong on purpose)."""
    request = unit.request()
    certificate = authority.issue(
        key_of or request,
        names(unit.unit_id) if dns_names is None else dns_names,
        not_before=not_before,
        not_after=not_after,
    )
    sent_ca = (ca or authority).pem
    entry = {
        'ca': sent_ca,
        'certificate_signing_request': request.public_bytes(PEM).decode(),
        'certificate': pem(certificate),
        'chain': [pem(certificate), sent_ca],
    }
    return {'certificates': json.dumps([entry])}


@pytest.fixture
def authority() -> Authority:
    return Authority.new()


def tls_on(unit: Unit, authority: Authority) -> testing.State:
    unit.run()  # the request
    unit.answer(signed(unit, authority))
    return unit.run()  # the certificate


# ---------------------------------------------------------------- requesting


@pytest.mark.parametrize('leader', [True, False])
def test_each_unit_asks_for_its_own_certificate_for_the_names_clients_use(
    tmp_path: Path, leader: bool
) -> None:
    unit = make_unit(tmp_path, 1, leader=leader)
    out = unit.run()
    request = unit.request()
    sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # The unit's own stable name, and the <app>-primary Service's three names:
    # a leadership change moves the Service, never the names on a certificate.
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(
        [
            f'{APP}-1.{APP}-endpoints.prod.svc.cluster.local',
            f'{APP}-primary',
            f'{APP}-primary.prod',
            f'{APP}-primary.prod.svc.cluster.local',
        ]
    )
    # Unit mode: the request is in this unit's databag, the key in a secret of its own.
    relation = out.get_relation(RELATION_ID)
    assert isinstance(relation, testing.Relation)
    assert relation.local_app_data == {}, 'nothing is the leader job'
    (key_secret,) = [s for s in out.secrets if tls.owns_secret(s.label)]
    assert key_secret.owner == 'unit'
    # Until the provider answers: plaintext, and a status that says what it waits for.
    assert unit.tls_dirs() == []
    assert 'port 6379' in unit.config().splitlines()
    assert out.unit_status == ops.WaitingStatus(
        f"certificates: waiting for {PROVIDER} to sign this unit's certificate"
    )


# ---------------------------------------------------------------- TLS on


def test_a_signed_certificate_turns_tls_on_live(
    tmp_path: Path, authority: Authority, live_server: FakeLive
) -> None:
    unit = make_unit(tmp_path)
    out = tls_on(unit, authority)
    (directory,) = unit.tls_dirs()
    config = unit.config()
    # TLS only, on the same port: plaintext clients are refused.
    for line in (
        'port 0',
        'tls-port 6379',
        f'tls-cert-file {TLS_DIR}/{directory.name}/cert.pem',
        f'tls-key-file {TLS_DIR}/{directory.name}/key.pem',
        f'tls-ca-cert-file {TLS_DIR}/{directory.name}/ca.pem',
        'tls-auth-clients no',
        'tls-replication yes',
    ):
        assert line in config.splitlines()
    assert (directory / 'ca.pem').read_text() == authority.pem
    key = directory / 'key.pem'
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert 'PRIVATE KEY' in key.read_text()
    # Applied to the running server, not by a restart (the fake server took it live).
    settings, _ = live_server.calls[-1]
    assert settings.tls is not None
    assert settings.tls.directory == f'{TLS_DIR}/{directory.name}'
    assert out.unit_status == ops.ActiveStatus('primary')


def test_the_leader_reads_and_changes_the_other_servers_over_tls_with_its_ca(
    tmp_path: Path, authority: Authority, choice: FakeChoice
) -> None:
    """With TLS on, every server's port speaks TLS only: plaintext would reach nobody."""
    unit = make_unit(tmp_path)
    unit.run()  # the request: plaintext until the provider answers
    assert choice.calls[-1]['transports'] == [None, None]
    unit.answer(signed(unit, authority))
    unit.run()  # the certificate: the running server speaks plaintext until this hook
    assert choice.calls[-1]['transports'] == [None, client.Tls(authority.pem)]
    unit.run()
    assert choice.calls[-1]['transports'] == [client.Tls(authority.pem)] * 2
    assert unit.relation is not None
    unit.run(unit.ctx.on.relation_broken(unit.relation))
    assert choice.calls[-1]['transports'] == [client.Tls(authority.pem), None], 'TLS off'


def test_the_key_is_in_no_log_no_status_and_not_in_the_pebble_plan(
    tmp_path: Path, authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    unit = make_unit(tmp_path)
    out = tls_on(unit, authority)
    (directory,) = unit.tls_dirs()
    key_body = (directory / 'key.pem').read_text().splitlines()[1]
    plan = out.get_container('valkey').plan.to_yaml()
    assert key_body not in plan
    assert key_body not in caplog.text
    assert key_body not in out.unit_status.message
    assert all(key_body not in line for line in unit.config().splitlines())


def test_a_leadership_change_needs_no_new_certificate(
    tmp_path: Path, authority: Authority, live_server: FakeLive
) -> None:
    """The follower that becomes the leader already serves the <app>-primary names."""
    unit = make_unit(tmp_path, 1, leader=False)
    tls_on(unit, authority)
    request_before = unit.request()
    (directory,) = unit.tls_dirs()
    config_before = unit.config()
    unit.state = dataclasses.replace(unit.state, leader=True)
    out = unit.run(unit.ctx.on.leader_elected())
    assert unit.request() == request_before, 'no new certificate request'
    assert unit.tls_dirs() == [directory], 'the same certificate'
    assert unit.config() != config_before  # the role changed...
    assert [line for line in unit.config().splitlines() if line.startswith('tls')] == [
        line for line in config_before.splitlines() if line.startswith('tls')
    ]  # ...and nothing about TLS
    settings, _ = live_server.calls[-1]
    assert settings.primary_address is None
    assert settings.tls is not None
    assert out.unit_status == ops.ActiveStatus('primary')


# ---------------------------------------------------------------- bad input


def _wrong_names(unit: Unit, authority: Authority) -> dict[str, str]:
    return signed(unit, authority, dns_names=(f'{APP}-primary',))


def _expired(unit: Unit, authority: Authority) -> dict[str, str]:
    return signed(unit, authority, not_before=NOW - 10 * DAY, not_after=NOW - DAY)


def _not_yet_valid(unit: Unit, authority: Authority) -> dict[str, str]:
    return signed(unit, authority, not_before=NOW + DAY, not_after=NOW + 10 * DAY)


def _another_key(unit: Unit, authority: Authority) -> dict[str, str]:
    other = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'x')])
    )
    stranger = other.sign(new_key(), hashes.SHA256())
    return signed(unit, authority, key_of=stranger)


def _another_ca(unit: Unit, authority: Authority) -> dict[str, str]:
    return signed(unit, authority, ca=Authority.new('another CA'))


def _refused(unit: Unit, _: Authority) -> dict[str, str]:
    csr = unit.request().public_bytes(PEM).decode()
    error = {'code': 201, 'name': 'DOMAIN_NOT_ALLOWED', 'message': 'domain not allowed'}
    return {'request_errors': json.dumps([{'csr': csr, 'error': error}])}


def _no_answer(_: Unit, __: Authority) -> dict[str, str]:
    return {}


BAD_ANSWERS: Final = {
    'without the needed names': (
        _wrong_names,
        ops.BlockedStatus,
        f'the certificate lacks the name {APP}-0.{APP}-endpoints.prod.svc.cluster.local '
        '(and 2 more)',
    ),
    'expired': (_expired, ops.BlockedStatus, 'the certificate expired on'),
    'not yet valid': (_not_yet_valid, ops.BlockedStatus, 'the certificate is not valid before'),
    "not matching the unit's key": (
        _another_key,
        ops.BlockedStatus,
        "the certificate does not match this unit's private key",
    ),
    'not signed by its CA': (
        _another_ca,
        ops.BlockedStatus,
        'the certificate is not signed by the CA sent with it',
    ),
    'refused': (_refused, ops.BlockedStatus, f"{PROVIDER} refused this unit's request"),
    'never answered': (_no_answer, ops.WaitingStatus, f'waiting for {PROVIDER} to sign'),
}


@pytest.mark.parametrize('case', BAD_ANSWERS, ids=list(BAD_ANSWERS))
def test_an_unusable_answer_changes_nothing_and_says_why(
    tmp_path: Path, authority: Authority, case: str
) -> None:
    answer, kind, message = BAD_ANSWERS[case]
    unit = make_unit(tmp_path)
    unit.run()
    config_before = unit.config()
    unit.answer(answer(unit, authority))
    out = unit.run()
    assert unit.tls_dirs() == [], 'nothing written'
    assert unit.config() == config_before, 'still plaintext'
    assert isinstance(out.unit_status, kind)
    assert out.unit_status.message.startswith('certificates: ')
    assert message in out.unit_status.message


@pytest.mark.parametrize('case', [c for c in BAD_ANSWERS if c != 'never answered'], ids=str)
def test_an_unusable_renewal_keeps_the_certificate_the_unit_serves(
    tmp_path: Path, authority: Authority, case: str
) -> None:
    answer, kind, message = BAD_ANSWERS[case]
    unit = make_unit(tmp_path)
    tls_on(unit, authority)
    served, config_before = unit.tls_dirs(), unit.config()
    unit.answer(answer(unit, authority))
    out = unit.run()
    assert unit.tls_dirs() == served
    assert unit.config() == config_before
    assert isinstance(out.unit_status, kind)
    assert message in out.unit_status.message
    assert out.unit_status.message.endswith(')')
    assert 'serving the previous certificate (expires' in out.unit_status.message


# ---------------------------------------------------------------- renewal


def test_renewal_asks_anew_at_ninety_percent_and_serves_the_old_one_until_the_answer(
    tmp_path: Path, authority: Authority, live_server: FakeLive
) -> None:
    unit = make_unit(tmp_path)
    unit.run()
    first_request = unit.request()
    # A certificate 92% through its life: served, and renewed in the same hook
    # (the library's own safety net would wait until 95%).
    unit.answer(signed(unit, authority, not_before=NOW - 23 * DAY, not_after=NOW + 2 * DAY))
    out = unit.run()
    (old,) = unit.tls_dirs()
    renewed_request = unit.request()
    assert renewed_request != first_request, 'a new request...'
    assert renewed_request.public_key() == first_request.public_key(), '...with the same key'
    assert out.unit_status == ops.ActiveStatus('primary')
    # Until the provider answers, every hook serves the old one, and says nothing is wrong.
    out = unit.run(unit.ctx.on.update_status())
    assert unit.tls_dirs() == [old]
    assert out.unit_status == ops.ActiveStatus('primary')
    # The provider answers the new request: a new directory, live, and the old one goes.
    calls = len(live_server.calls)
    unit.answer(signed(unit, authority))
    out = unit.run()
    (new,) = unit.tls_dirs()
    assert new != old
    assert f'tls-cert-file {TLS_DIR}/{new.name}/cert.pem' in unit.config()
    assert len(live_server.calls) == calls + 1
    assert out.unit_status == ops.ActiveStatus('primary')


def test_a_certificate_that_expired_unrenewed_is_reported_and_kept(
    tmp_path: Path, authority: Authority
) -> None:
    """Valkey refuses an expired certificate at start: the charm keeps what runs, and says so."""
    unit = make_unit(tmp_path)
    tls_on(unit, authority)
    (served,) = unit.tls_dirs()
    # The provider's answer disappears (a renewal it never answers), and time passes.
    unit.answer({})
    out = unit.run()
    assert out.unit_status == ops.ActiveStatus('primary')
    later = NOW + 30 * DAY
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tls, '_now', lambda: later)
        out = unit.run()
    assert unit.tls_dirs() == [served]
    assert isinstance(out.unit_status, ops.WaitingStatus)
    assert 'serving the previous certificate (expires' in out.unit_status.message


# ---------------------------------------------------------------- TLS off


def test_removing_the_relation_turns_tls_off_and_removes_the_key(
    tmp_path: Path, authority: Authority, live_server: FakeLive
) -> None:
    unit = make_unit(tmp_path)
    tls_on(unit, authority)
    assert unit.relation is not None
    out = unit.run(unit.ctx.on.relation_broken(unit.relation))
    assert unit.tls_dirs() == []
    config = unit.config()
    assert 'port 6379' in config.splitlines()
    assert 'tls' not in config
    assert [
        s for s in out.secrets if tls.owns_secret(s.label) and 'private-key' in (s.label or '')
    ] == []
    settings, _ = live_server.calls[-1]
    assert settings.tls is None
    assert out.unit_status == ops.ActiveStatus('primary')


# ---------------------------------------------------------------- secrets


def test_any_unit_removes_old_revisions_of_its_own_certificate_secrets(tmp_path: Path) -> None:
    unit = make_unit(tmp_path, 1, leader=False)
    label = 'afd8c2bccf834997afce12c2706d2ede-certificate-1-certificates-abc'
    secret = testing.Secret({'certificate': 'y'}, owner='unit', label=label)
    # Revision 1 is an old one: the unit tracks (and the latest is) revision 2.
    object.__setattr__(secret, '_latest_revision', 2)
    object.__setattr__(secret, '_tracked_revision', 2)
    unit.state = dataclasses.replace(unit.state, secrets={secret})
    ctx = unit.ctx
    ctx.run(ctx.on.secret_remove(secret, revision=1), unit.state)
    assert ctx.removed_secret_revisions == [1]


def test_the_prefix_is_the_library_s_own() -> None:
    from charmlibs.interfaces.tls_certificates import _tls_certificates

    assert tls.owns_secret(f'{_tls_certificates.LIBID}-private-key-0-certificates')  # pyright: ignore[reportPrivateUsage]
    assert not tls.owns_secret('admin-password')
    assert not tls.owns_secret(None)


# ---------------------------------------------------------------- the pure part


def _validate(certificate: str, chain: list[str], ca: str, key: str) -> object:
    return tls.validate(
        certificate=certificate, chain=chain, ca=ca, private_key=key, names=names(0), now=NOW
    )


def test_a_chain_through_an_intermediate_is_served_leaf_first_without_the_ca() -> None:
    root = Authority.new('root')
    intermediate = Authority.new('intermediate', issuer=root)
    key = new_key()
    leaf = intermediate.issue(key.public_key(), names(0))
    # The provider may send the chain in any order, with the leaf and the CA in it.
    material = _validate(
        pem(leaf), [root.pem, pem(leaf), intermediate.pem], root.pem, key_pem(key)
    )
    assert isinstance(material, TlsMaterial)
    assert material.certificate_chain == pem(leaf) + intermediate.pem
    assert material.ca == root.pem
    assert 'PRIVATE' not in repr(material), 'the key is not in its repr'


def test_a_wildcard_covers_one_label_only() -> None:
    authority, key = Authority.new(), new_key()
    wildcard = (f'*.{APP}-endpoints.prod.svc.cluster.local', *names(0)[1:])
    leaf = authority.issue(key.public_key(), wildcard)
    assert isinstance(_validate(pem(leaf), [], authority.pem, key_pem(key)), TlsMaterial)
    too_wide = ('*.svc.cluster.local', *names(0)[1:])
    leaf = authority.issue(key.public_key(), too_wide)
    assert _validate(pem(leaf), [], authority.pem, key_pem(key)) == (
        f'the certificate lacks the name {names(0)[0]}'
    )


def test_unreadable_or_expired_pieces_are_named() -> None:
    authority, key = Authority.new(), new_key()
    leaf = pem(authority.issue(key.public_key(), names(0)))
    assert _validate('not a certificate', [], authority.pem, key_pem(key)) == (
        'the certificate or its CA is not a PEM certificate'
    )
    assert _validate(leaf, [], authority.pem, 'not a key') == (
        "this unit's private key cannot be read"
    )
    old_ca = Authority.new(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    leaf_of_old = pem(old_ca.issue(key.public_key(), names(0)))
    message = _validate(leaf_of_old, [], old_ca.pem, key_pem(key))
    assert isinstance(message, str)
    assert message.startswith('its CA expired on')
    no_names = pem(authority.issue(key.public_key(), ()))
    assert _validate(no_names, [], authority.pem, key_pem(key)) == (
        f'the certificate lacks the name {names(0)[0]} (and 3 more)'
    )


def test_renewal_is_due_at_ninety_percent_of_the_validity() -> None:
    start, end = NOW, NOW + 10 * DAY
    assert not tls.renewal_due(start, end, NOW + 8 * DAY)
    assert tls.renewal_due(start, end, NOW + 9 * DAY)


def test_the_common_name_fits_the_64_characters_a_cn_may_hold() -> None:
    assert tls.common_name('valkey/3') == 'valkey-3'
    assert len(tls.common_name('v' * 70 + '/0')) == 64


# ---------------------------------------------------------------- clients


def test_clients_are_told_to_use_tls_and_which_ca_to_trust(
    tmp_path: Path, authority: Authority
) -> None:
    from .test_clients import client_relation, responses

    unit = make_unit(tmp_path)
    unit.state = dataclasses.replace(
        unit.state, relations={*unit.state.relations, client_relation(40)}
    )
    out = unit.run(unit.ctx.on.update_status())
    (plain,) = responses(out, 40)
    assert plain.get('secret-tls') is None, 'no TLS yet: no TLS secret'
    unit.run()
    unit.answer(signed(unit, authority))
    out = unit.run()
    (answer,) = responses(out, 40)
    (secret,) = [s for s in out.secrets if s.id == answer['secret-tls']]
    assert secret.latest_content == {'tls': 'true', 'tls-ca': authority.pem}
    assert secret.remote_grants == {40: {'myapp'}}
