# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Client applications (``juju integrate <client> valkey-leader-k8s``): a Valkey user each.

The ``valkey-client`` endpoint speaks ``valkey_client``, the interface of
Canonical's Valkey charm, through the data platform's interface library
(``dpcharmlibs-interfaces``): the client lists its requests (a key prefix as
``resource``), the provider answers each with a username, a password in a
secret granted to the client, and the endpoints.

Leadership, as for the admin password:

* Only the leader serves (:func:`serve`): it reads the requests, writes the
  answers, creates and grants the secrets, and publishes in the peer
  application databag which users exist. Every write is preceded by
  ``before_write``, the charm's "am I still the leader?" check.
* A new leader reuses what its predecessor wrote: the password is read back
  from the secret the answer points at, so no client's credentials change.
* Every unit writes the published users into its own config file
  (:func:`users_for_this_unit`), because Valkey does not replicate ACL users
  from the primary. What is published is, per user, its name, key pattern,
  relation id, the id of its secret, and the SHA-256 of its password: a hash of
  48 random letters and digits (about 285 bits) cannot be turned back into the
  password, it is what Valkey itself keeps (and what ``ACL LIST`` shows an
  admin), and the peer databag is readable by this application's units only.

The library is heavy to import (pydantic, cryptography): it is imported only
by a leader that has client relations to serve; the charm imports this module
only where there are client relations or published users.

This module knows ops' relations and secrets, but no Juju events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import ops

from leadership import CLIENT_USERS_KEY, PEER_ENDPOINT, unit_address
from password_secret import generate
from workload.config import KEY_PATTERN, PORT, AclUser

if TYPE_CHECKING:
    from dpcharmlibs.interfaces import (
        RequirerCommonModel,
        ResourceProviderEventHandler,
        ResourceProviderModel,
        ValkeyResponseModel,
    )

logger = logging.getLogger(__name__)

ENDPOINT: Final = 'valkey-client'
PEER_KEY: Final = CLIENT_USERS_KEY
"""The key in the peer application databag that lists the client users."""
REFUSED: Final = 5000
"""The relation status code of a request this charm does not serve (fatal: re-relate)."""
MALFORMED: Final = 5001
"""The relation status code of data the interface library cannot read."""
_REQUEST_ID = re.compile(r'[0-9A-Za-z_-]{1,64}')
_SECRET_ID = re.compile(r'secret:[0-9A-Za-z/:._-]+')


Users = tuple[AclUser, ...]


class RequestRefusedError(Exception):
    """A client asked for something this charm does not offer; the message says what to ask."""


class UnreadableRequestError(Exception):
    """The interface library could not read a client's data; the message names its error."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientUser:
    """One published client user: what every unit renders, and what the leader cleans up."""

    relation_id: int
    user: AclUser
    secret_id: str | None
    """The secret (owned by this app, granted to the client) holding its credentials."""

    def encode(self) -> dict[str, object]:
        """The user's entry in the peer databag: never the password itself."""
        return {
            'relation-id': self.relation_id,
            'name': self.user.name,
            'password-sha256': self.user.password_sha256,
            'keys': self.user.key_pattern,
            'secret-id': self.secret_id,
        }

    @classmethod
    def decode(cls, entry: Any) -> ClientUser:
        """Read an entry back; raises ``ValueError`` (or ``TypeError``) if it is not one."""
        relation_id, secret_id = entry['relation-id'], entry['secret-id']
        if type(relation_id) is not int:
            raise TypeError('relation-id is not an integer')
        if secret_id is not None and not _matches(_SECRET_ID, secret_id):
            raise ValueError('secret-id is not a secret id')
        user = AclUser(
            name=entry['name'], password_sha256=entry['password-sha256'], key_pattern=entry['keys']
        )
        return cls(relation_id=relation_id, user=user, secret_id=secret_id)


@dataclasses.dataclass(frozen=True)
class Served:
    """What the leader's :func:`serve` leaves in place."""

    users: Users
    problem: ops.StatusBase | None = None
    """The first client relation it could not serve, named."""

    @property
    def remembered_problem(self) -> list[str]:
        """The problem as ``StoredState`` can keep it: ``[status name, message]``, or empty."""
        return [self.problem.name, self.problem.message] if self.problem else []


def published(peer: ops.Relation | None, app: ops.Application) -> tuple[ClientUser, ...]:
    """The client users the leader published in the peer databag (unusable entries skipped)."""
    raw = peer.data[app].get(PEER_KEY) if peer is not None else None
    if not raw:
        return ()
    try:
        entries = json.loads(raw)
        if not isinstance(entries, list):
            raise TypeError('not a list')
    except (TypeError, ValueError) as e:
        logger.warning('Ignoring unusable %s in %s: %s', PEER_KEY, peer, e)
        return ()
    users: list[ClientUser] = []
    for entry in entries:  # pyright: ignore[reportUnknownVariableType]
        try:
            users.append(ClientUser.decode(entry))
        except (KeyError, TypeError, ValueError) as e:
            logger.warning('Ignoring an unusable client user entry: %s', e)
    return tuple(users)


def users_for_this_unit(model: ops.Model) -> Users:
    """The published users of the client relations this unit still sees (any unit).

    A relation being removed is gone from ``model.relations`` already in its
    ``relation-broken`` hook: its user leaves this unit's file at once, whoever
    leads and whether or not the leader got to unpublish it yet.
    """
    users = published(model.get_relation(PEER_ENDPOINT), model.app)
    if not users:
        return ()  # no `relation-ids` call either
    current = {relation.id for relation in model.relations[ENDPOINT]}
    return tuple(u.user for u in users if u.relation_id in current)


def serve(
    charm: ops.CharmBase,
    peer: ops.Relation | None,
    valkey_version: str,
    *,
    tls_ca: str | None = None,
    before_write: Callable[[], None],
) -> Served:
    """Answer every client relation, remove what no relation needs, publish the users (leader).

    Idempotent: it starts from what the relations and the peer databag hold,
    whichever leader wrote them, and writes only what differs.
    """
    relations = sorted(charm.model.relations[ENDPOINT], key=lambda r: r.id)
    previous = published(peer, charm.app)
    if not relations and not previous:
        return Served(())  # no client, no import of the interface library
    serving: list[ClientUser] = []
    problems: list[ops.StatusBase] = []
    if relations:
        provider = _provider(charm)
        answer = _Answer(
            endpoints=f'{charm.app.name}-primary.{charm.model.name}.svc.cluster.local:{PORT}',
            read_only_endpoints=_unit_endpoints(charm, peer),
            version=valkey_version or None,  # known once the unit has run Valkey
            tls_ca=tls_ca,
        )
        for relation in relations:
            try:
                result = _serve_relation(provider, relation, answer, serving, before_write)
            except UnreadableRequestError as e:
                # Never a traceback; the client keeps the users it had.
                logger.warning('Cannot read %s:%d: %s', ENDPOINT, relation.id, e)
                refusal = f'unreadable request data ({e})'
                with contextlib.suppress(ValueError, ops.ModelError):  # best effort
                    _tell(provider, relation, {MALFORMED: refusal}, before_write)
                result = _RelationServed(_of(previous, relation), [_status(relation, refusal)])
            except (ops.ModelError, ValueError, _library_error()) as e:
                # Juju refused a read or a write of ours (the library's models wrap
                # what Juju raised while writing): the next event retries.
                why = type(e).__name__
                logger.warning('Could not answer %s:%d: %s', ENDPOINT, relation.id, why)
                retry = _status(relation, f'could not answer ({why}); retrying', ops.WaitingStatus)
                result = _RelationServed(_of(previous, relation), [retry])
            problems.extend(result.problems)
            serving.extend(result.users)
    _remove_stale(charm.model, previous, serving, before_write)
    _publish(peer, charm.app, serving, before_write)
    return Served(tuple(u.user for u in serving), problems[0] if problems else None)


def owns_secret(label: str | None) -> bool:
    """Whether a secret label is one the interface library gave a client's credentials."""
    return label is not None and label.startswith(f'{ENDPOINT}.')


# -- Inside: one relation.


@dataclasses.dataclass(frozen=True)
class _Answer:
    """What every client is told, whatever it asked."""

    endpoints: str
    read_only_endpoints: str
    version: str | None
    tls_ca: str | None = None
    """The CA the servers' certificates chain to, while TLS is on; ``None``: plaintext."""


@dataclasses.dataclass(frozen=True)
class _RelationServed:
    users: list[ClientUser]
    problems: list[ops.StatusBase]


def _serve_relation(
    provider: ResourceProviderEventHandler[RequirerCommonModel],
    relation: ops.Relation,
    answer: _Answer,
    others: Sequence[ClientUser],
    before_write: Callable[[], None],
) -> _RelationServed:
    from dpcharmlibs.interfaces import ValkeyResponseModel  # noqa: PLC0415 - loaded already

    try:
        requests = provider.requests(relation)
    except (ValueError, _library_error()) as e:
        # Malformed remote data: the library raises (pydantic's ValidationError is
        # a ValueError, so is json's JSONDecodeError).
        raise UnreadableRequestError(type(e).__name__) from e
    existing = {r.request_id: r for r in provider.responses(relation, ValkeyResponseModel)}
    users: list[ClientUser] = []
    refusals: dict[int, str] = {}
    changed: list[ValkeyResponseModel] = []
    for request in requests:
        if _differs(provider, relation, request):
            # The library's requirer side matches answers (and statuses) to this copy.
            before_write()
            provider.compute_diff(relation, request, store=True)
        try:
            keys = _key_pattern(request, relation, others)
            name = _user_name(relation.id, request)
        except RequestRefusedError as e:
            refusals[REFUSED] = str(e)
            continue
        previous = existing.get(request.request_id)
        # A new leader keeps the client's credentials: read them back from the secret.
        password = previous.password if previous and previous.username == name else None
        password = password or generate()
        response = ValkeyResponseModel(
            request_id=request.request_id,
            salt=request.salt,
            resource=keys,
            username=name,
            password=password,
            endpoints=answer.endpoints,
            read_only_endpoints=answer.read_only_endpoints,
            # Until this unit has run Valkey (a new leader's first hook), keep the last answer's.
            version=answer.version or (previous.version if previous else None),
            # Clients must connect with TLS, and trust this CA, while TLS is on.
            # Without TLS both stay unset: the library then makes no TLS secret.
            tls=True if answer.tls_ca is not None else None,
            tls_ca=answer.tls_ca,
        )
        if previous is None or not _same(previous, response):
            changed.append(response)
        user = AclUser(
            name=name,
            password_sha256=hashlib.sha256(password.encode()).hexdigest(),
            key_pattern=keys,
        )
        secret_id = previous.secret_user if previous else None
        users.append(ClientUser(relation_id=relation.id, user=user, secret_id=secret_id))
    if changed:
        # Writes the answers; creates each new secret and grants it to the client app.
        before_write()
        provider.set_responses(relation.id, list(changed))
        ids = {
            r.request_id: r.secret_user for r in provider.responses(relation, ValkeyResponseModel)
        }
        users = [
            dataclasses.replace(u, secret_id=ids.get(_request_id(u)) or u.secret_id) for u in users
        ]
        logger.info('Answered %d request(s) on %s:%d', len(changed), ENDPOINT, relation.id)
    _tell(provider, relation, refusals, before_write)
    problems = [_status(relation, refusal) for refusal in refusals.values()]
    return _RelationServed(users, problems)


def _key_pattern(
    request: RequirerCommonModel, relation: ops.Relation, others: Sequence[ClientUser]
) -> str:
    """The keys a request may use: its own prefix, or ``<client app>:*`` if it names none."""
    if request.entity_type or request.entity_permissions:
        raise RequestRefusedError('custom users and groups (entity requests) are not offered')
    if request.extra_user_roles or request.extra_group_roles:
        raise RequestRefusedError(
            'extra roles are not offered: every client gets the same commands'
        )
    keys = request.resource or f'{relation.app.name}:*'
    if not KEY_PATTERN.fullmatch(keys):
        raise RequestRefusedError(
            f"resource {keys[:70]!r} is not a key prefix: ask for '<prefix>*', such as 'myapp:*'"
        )
    # Least privilege between clients too: no two relations share keys. The older
    # relation (lower id) keeps its prefix; the newer one is refused while both exist.
    prefix = keys[:-1]
    for other in others:
        theirs = other.user.key_pattern[:-1]
        if other.relation_id != relation.id and (
            prefix.startswith(theirs) or theirs.startswith(prefix)
        ):
            raise RequestRefusedError(
                f'{keys!r} overlaps the keys of {ENDPOINT}:{other.relation_id}: '
                'ask for another prefix'
            )
    return keys


def _user_name(relation_id: int, request: RequirerCommonModel) -> str:
    """``relation-<id>``, or ``relation-<id>-<request id>`` for each request of a v1 client."""
    from dpcharmlibs.interfaces import RequirerDataContractV0  # noqa: PLC0415 - loaded already

    if isinstance(request, RequirerDataContractV0):
        return f'relation-{relation_id}'  # the older protocol: one request, no id
    if request.request_id is None:
        raise RequestRefusedError('a request without a request-id cannot be answered')
    if not _REQUEST_ID.fullmatch(request.request_id):
        raise RequestRefusedError('request-id must be 1 to 64 letters, digits, - or _')
    return f'relation-{relation_id}-{request.request_id}'


def _request_id(user: ClientUser) -> str | None:
    parts = user.user.name.split('-', 2)
    return parts[2] if len(parts) == 3 else None


def _same(previous: ResourceProviderModel, response: ResourceProviderModel) -> bool:
    fields = (
        'username',
        'password',
        'resource',
        'endpoints',
        'read_only_endpoints',
        'version',
        'tls',
        'tls_ca',
    )
    same = all(getattr(previous, f) == getattr(response, f) for f in fields)
    return same and previous.secret_user is not None


def _differs(
    provider: ResourceProviderEventHandler[RequirerCommonModel],
    relation: ops.Relation,
    request: RequirerCommonModel,
) -> bool:
    """Whether the request differs from the copy kept in this app's databag (``data``).

    The library's requirer side matches each answer to that copy, and tells a
    newly raised relation status from the statuses stored with it: the copy is
    written before the answer and the status, and only when it changed.
    """
    diff = provider.compute_diff(relation, request, store=False)
    return bool(diff.added or diff.changed or diff.deleted)


def _tell(
    provider: ResourceProviderEventHandler[RequirerCommonModel],
    relation: ops.Relation,
    refusals: dict[int, str],
    before_write: Callable[[], None],
) -> None:
    """Put this charm's answer to what it cannot serve in the relation's status field."""
    from dpcharmlibs.interfaces import RelationStatus  # noqa: PLC0415 - loaded already

    current = provider.get_statuses(relation.id)
    wanted = {
        code: RelationStatus(
            code=code,
            message=message,
            resolution='remove the relation, fix the request, then integrate again',
        )
        for code, message in refusals.items()
    }
    if current == wanted:
        return
    before_write()
    provider.clear_statuses(relation.id)
    for status in wanted.values():
        before_write()
        provider.raise_status(relation.id, status)


def _status(
    relation: ops.Relation, message: str, kind: type[ops.StatusBase] = ops.BlockedStatus
) -> ops.StatusBase:
    return kind(f'{ENDPOINT}:{relation.id} ({relation.app.name}): {message}')


def _of(users: Iterable[ClientUser], relation: ops.Relation) -> list[ClientUser]:
    return [u for u in users if u.relation_id == relation.id]


def _unit_endpoints(charm: ops.CharmBase, peer: ops.Relation | None) -> str:
    """Every unit's own address: a leadership change does not change this list."""
    units = {charm.unit, *(peer.units if peer is not None else ())}
    names = sorted((u.name for u in units), key=lambda n: int(n.rsplit('/', 1)[1]))
    return ','.join(f'{unit_address(n, charm.app.name, charm.model.name)}:{PORT}' for n in names)


# -- Inside: the peer databag and the secrets of relations that are gone.


def _remove_stale(
    model: ops.Model,
    previous: Iterable[ClientUser],
    serving: Iterable[ClientUser],
    before_write: Callable[[], None],
) -> None:
    """Remove the secret of every user no relation needs any more (its relation is gone).

    Whoever leads does it: a relation removed while leadership moved is cleaned
    up by the next leader, from what its predecessor published.
    """
    kept = {u.user.name for u in serving}
    for user in previous:
        if user.user.name in kept or user.secret_id is None:
            continue
        before_write()
        with contextlib.suppress(ops.SecretNotFoundError):  # removed already
            model.get_secret(id=user.secret_id).remove_all_revisions()
        logger.info('Removed client user %s and its secret', user.user.name)


def _publish(
    peer: ops.Relation | None,
    app: ops.Application,
    users: Sequence[ClientUser],
    before_write: Callable[[], None],
) -> None:
    if peer is None:
        return  # no peer yet: nobody to tell; relation-created runs the leader again
    encoded = json.dumps([u.encode() for u in users], sort_keys=True) if users else ''
    if peer.data[app].get(PEER_KEY, '') == encoded:
        return  # unchanged: do not wake every peer up for nothing
    before_write()
    peer.data[app][PEER_KEY] = encoded


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _library_error() -> type[Exception]:
    import_library()
    from dpcharmlibs.interfaces import DataInterfacesError  # noqa: PLC0415

    return DataInterfacesError


def _provider(charm: ops.CharmBase) -> ResourceProviderEventHandler[RequirerCommonModel]:
    """The interface library's provider, made only when there is a client to serve.

    Made during the hook (not in ``__init__``), so none of its own observers run:
    this charm reconciles every client relation on every event instead, and
    uses the library to read requests and to write answers, secrets and grants.
    """
    import_library()
    from dpcharmlibs.interfaces import (  # noqa: PLC0415
        RequirerCommonModel,
        ResourceProviderEventHandler,
    )

    return ResourceProviderEventHandler(charm, ENDPOINT, RequirerCommonModel)


def import_library() -> None:
    """Import ``dpcharmlibs.interfaces`` (once per process), here and nowhere else first.

    Juju starts a new process for every hook, and this import (pydantic,
    cryptography) costs several times what the rest of the charm does: only a
    leader with client relations calls this.
    """
    with warnings.catch_warnings():
        # dpcharmlibs-interfaces 1.2.2 puts Field(default=..., exclude=...) inside
        # Annotated type aliases, which pydantic >= 2.12 warns about while building
        # the models at import time: harmless (the models set the same defaults
        # themselves), not ours to fix, and an error where warnings are errors.
        warnings.filterwarnings(
            'ignore', message=r"The '\w+' attribute with value .* was provided to the `Field\(\)`"
        )
        import dpcharmlibs.interfaces  # noqa: F401, PLC0415  # pyright: ignore[reportUnusedImport]
