# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What the integration tests need besides jubilant: leadership from status, valkey-cli, kubectl.

The names below are the charm's contract (DESIGN.md, "Names"); they are written
out here rather than imported from src/ so that the tests check the contract
instead of repeating whatever the code says.

The Valkey password is only ever held in a :class:`Password`, which never
shows itself in a repr, a log line or an assertion message, and reaches
``valkey-cli`` over stdin (see :func:`valkey_cli`).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import jubilant
import yaml

logger = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
APP: Final = 'valkey-leader-k8s'
CONTAINER: Final = 'valkey'
PEER_ENDPOINT: Final = 'valkey-peers'
SECRET_LABEL: Final = 'admin-password'
SECRET_KEY: Final = 'password'
PUBLISHED_SECRET_ID_KEY: Final = 'password-secret-id'
PRIMARY_SERVICE: Final = f'{APP}-primary'
POD_NAME_LABEL: Final = 'statefulset.kubernetes.io/pod-name'
APP_LABEL: Final = 'app.kubernetes.io/name'

T = TypeVar('T')


def metadata() -> dict[str, Any]:
    """The charm's metadata.yaml."""
    return cast('dict[str, Any]', yaml.safe_load((REPO_ROOT / 'metadata.yaml').read_text()))


def pod_name(unit: str) -> str:
    """Kubernetes runs unit ``app/1`` in pod ``app-1`` (a StatefulSet ordinal)."""
    return unit.replace('/', '-')


def new_key() -> tuple[str, str]:
    """A key and value no earlier test wrote."""
    return f'it-{secrets.token_hex(4)}', secrets.token_hex(8)


# ------------------------------------------------------------------ waiting


def wait_until(
    probe: Callable[[], T],
    ok: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 3.0,
) -> T:
    """Call ``probe`` until ``ok`` accepts its result; fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f'after {timeout:.0f}s, still waiting for {what}; last: {value!r}'
            )
        time.sleep(interval)


# --------------------------------------------------------------- leadership


def get_leader_unit(juju: jubilant.Juju, app: str = APP) -> str | None:
    """The how-to's ``get_leader_unit``, with jubilant: the unit `juju status` marks leader.

    There can be none for a while, right after a deploy or while Juju elects a
    new leader.
    """
    for name, unit in juju.status().apps[app].units.items():
        if unit.leader:
            return name
    return None


def leaders(status: jubilant.Status, app: str = APP) -> list[str]:
    """Every unit that ``status`` marks as leader (one, once the app has settled)."""
    return sorted(name for name, unit in status.apps[app].units.items() if unit.leader)


def role_problems(status: jubilant.Status, units: int, app: str = APP) -> list[str]:
    """Why ``status`` does not (yet) show a settled primary/replica set; empty once it does.

    Settled means: ``units`` units, all idle; exactly one leader; the leader
    says ``primary``, every other unit ``replica of <leader>``; the application
    says ``primary is <leader>``.
    """
    application = status.apps.get(app)
    if application is None:
        return [f'{app} is not deployed']
    problems: list[str] = []
    if len(application.units) != units:
        problems.append(f'{len(application.units)} units, want {units}')
    elected = leaders(status, app)
    if len(elected) != 1:
        return [*problems, f'leaders {elected}, want exactly one']
    (leader,) = elected
    for name, unit in sorted(application.units.items()):
        want = 'primary' if name == leader else f'replica of {leader}'
        workload = unit.workload_status
        if (workload.current, workload.message) != ('active', want):
            problems.append(f'{name} is {workload.current} {workload.message!r}, want {want!r}')
        if unit.juju_status.current != 'idle':
            problems.append(f'{name} agent is {unit.juju_status.current}')
    app_status = application.app_status
    if (app_status.current, app_status.message) != ('active', f'primary is {leader}'):
        problems.append(f'{app} is {app_status.current} {app_status.message!r}')
    return problems


def wait_for_roles(juju: jubilant.Juju, *, units: int, timeout: float) -> jubilant.Status:
    """Wait until the app is a settled primary/replica set of ``units`` units."""
    try:
        return juju.wait(
            lambda status: not role_problems(status, units),
            error=lambda status: jubilant.any_error(status, APP),
            timeout=timeout,
        )
    except TimeoutError as e:
        problems = role_problems(juju.status(), units)
        raise AssertionError(f'roles did not settle in {timeout:.0f}s: {problems}') from e


def leader_of(status: jubilant.Status) -> str:
    """The one leader of a settled app (see :func:`wait_for_roles`)."""
    (leader,) = leaders(status)
    return leader


# ----------------------------------------------------------------- password


class Password:
    """The Valkey password, which never shows itself.

    Not a ``str`` (pytest would diff two strings in a failed assertion) and not
    a dataclass (pytest would compare their fields): its repr is redacted, and
    equality is constant-time.
    """

    __slots__ = ('_value',)

    def __init__(self, value: str) -> None:
        if not value or '\n' in value:
            # valkey_cli sends it as one line on stdin.
            raise ValueError('a password must be one non-empty line')
        self._value = value

    def __repr__(self) -> str:
        return 'Password(<redacted>)'

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Password):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def as_stdin(self) -> str:
        """The password as one line of standard input, the only way it leaves this object."""
        return self._value + '\n'

    def appears_in(self, text: str) -> bool:
        """Whether ``text`` contains the password (to prove it did not leak)."""
        return self._value in text


def published_secret_id(juju: jubilant.Juju, unit: str) -> str:
    """The password secret's id, as the leader published it in the peer app databag.

    ``juju show-unit`` shows the peer relation's application data; the value is
    JSON-encoded (``Relation.save``).
    """
    for relation in juju.show_unit(unit).relation_info:
        if relation.endpoint == PEER_ENDPOINT and PUBLISHED_SECRET_ID_KEY in relation.app_data:
            return cast('str', json.loads(relation.app_data[PUBLISHED_SECRET_ID_KEY]))
    raise AssertionError(f'{unit} sees no {PUBLISHED_SECRET_ID_KEY} in the {PEER_ENDPOINT} data')


def read_password(juju: jubilant.Juju, unit: str) -> Password:
    """Read the password the way an operator does: ``juju show-secret <id> --reveal``.

    The id comes from the peer databag; it must also be the model's secret
    labelled ``admin-password`` in ``juju secrets``. The revealed content goes
    straight into a :class:`Password` and is held by no local variable.
    """
    secret_id = published_secret_id(juju, unit)
    wanted = jubilant.SecretURI(secret_id).unique_identifier
    listed = [s for s in juju.secrets() if s.uri.unique_identifier == wanted]
    assert listed, f'`juju secrets` does not list the published secret {secret_id}'
    assert listed[0].label in (None, '', SECRET_LABEL), f'unexpected label {listed[0].label!r}'
    return Password(juju.show_secret(secret_id, reveal=True).content[SECRET_KEY])


# --------------------------------------------------------------- valkey-cli


@dataclasses.dataclass(frozen=True)
class Reply:
    """What ``valkey-cli`` printed (stdout and stderr) and whether everything exited 0."""

    ok: bool
    text: str

    @property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if line.strip()]


# The password reaches valkey-cli without ever being in any process's argv:
# `juju ssh` sends our stdin to the container, where the shell builtin `read`
# takes it off stdin into a variable, and `exec` hands it to valkey-cli in the
# environment (VALKEYCLI_AUTH, and REDISCLI_AUTH for older clients), which only
# the same user or root can read in /proc. `juju ssh` itself, and the
# `sh -c` that Juju wraps around this script, only ever see the variable names.
# `env REDISCLI_AUTH=... valkey-cli` would put the password in env's argv, and
# `valkey-cli -a ...` in valkey-cli's.
_VALKEY_CLI_SCRIPT: Final = (
    'IFS= read -r VALKEYCLI_AUTH && REDISCLI_AUTH="$VALKEYCLI_AUTH" && '
    'export VALKEYCLI_AUTH REDISCLI_AUTH && exec valkey-cli {command}'
)


def valkey_cli(juju: jubilant.Juju, unit: str, password: Password, *command: str) -> Reply:
    """Run ``valkey-cli <command>`` in the unit's workload container, authenticated.

    ``--pty=false``: with a terminal the password would be echoed back.
    """
    script = _VALKEY_CLI_SCRIPT.format(command=shlex.join(command))
    try:
        stdout = juju.cli(
            'ssh', '--pty=false', '--container', CONTAINER, unit, script, stdin=password.as_stdin()
        )
    except jubilant.CLIError as e:
        return Reply(ok=False, text=f'{e.stdout or ""}{e.stderr or ""}'.strip())
    return Reply(ok=True, text=stdout.strip())


def info_fields(reply: Reply) -> dict[str, str]:
    """``INFO`` output as a dict (``role:master`` -> ``{'role': 'primary', ...}``).

    Valkey still says master/slave in ``INFO`` for Redis compatibility; the
    fields are also offered under primary/replica names, in case a release
    switches.
    """
    fields: dict[str, str] = {}
    for line in reply.lines:
        key, sep, value = line.partition(':')
        if sep and not line.startswith('#'):
            fields[key] = value
    renamed = {'master': 'primary', 'slave': 'replica'}
    if 'role' in fields:
        fields['role'] = renamed.get(fields['role'], fields['role'])
    for key, value in list(fields.items()):
        if key.startswith('master_'):
            fields.setdefault('primary_' + key.removeprefix('master_'), value)
        if key == 'connected_slaves':
            fields.setdefault('connected_replicas', value)
    return fields


def wait_for_value(
    juju: jubilant.Juju,
    unit: str,
    password: Password,
    key: str,
    value: str,
    *,
    timeout: float = 60,
) -> None:
    """Wait until ``unit`` serves ``key`` with ``value`` (replication is asynchronous)."""
    wait_until(
        lambda: valkey_cli(juju, unit, password, 'GET', key),
        lambda reply: reply.lines == [value],
        timeout=timeout,
        what=f'{unit} to serve {key}',
    )


def wait_for_pong(
    juju: jubilant.Juju, units: Iterable[str], password: Password, timeout: float = 120
) -> None:
    """Wait until every unit accepts ``password`` (each applies it in its own hook)."""
    for unit in units:
        wait_until(
            lambda unit=unit: valkey_cli(juju, unit, password, 'PING'),
            lambda reply: reply.lines == ['PONG'],
            timeout=timeout,
            what=f'{unit} to accept the password',
        )


def assert_replication(
    juju: jubilant.Juju, leader: str, replicas: Iterable[str], password: Password
) -> None:
    """A key written on the leader is served by every replica; replicas follow the leader."""
    key, value = new_key()
    reply = valkey_cli(juju, leader, password, 'SET', key, value)
    assert reply.lines == ['OK'], f'SET on the leader {leader}: {reply}'
    leader_host = f'{pod_name(leader)}.'
    for replica in replicas:
        wait_for_value(juju, replica, password, key, value)
        info = info_fields(valkey_cli(juju, replica, password, 'INFO', 'replication'))
        assert info.get('role') == 'replica', f'{replica} INFO replication: {info}'
        assert info.get('primary_host', '').startswith(leader_host), (
            f'{replica} replicates from {info.get("primary_host")}, not from {leader}'
        )
        assert info.get('primary_link_status') == 'up', f'{replica} INFO replication: {info}'


# ------------------------------------------------------------------ kubectl


class KubectlError(Exception):
    """kubectl failed; the message carries its stderr (which holds no secrets)."""


@dataclasses.dataclass(frozen=True)
class Kubectl:
    """kubectl, pointed at the model's namespace (Juju names it after the model)."""

    command: tuple[str, ...]
    namespace: str

    def run(self, *args: str) -> str:
        argv = [*self.command, '--namespace', self.namespace, *args]
        process = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if process.returncode != 0:
            raise KubectlError(f'{shlex.join(argv)}: {process.stderr.strip()}')
        return process.stdout

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object as JSON, or ``None`` if it does not exist."""
        try:
            return cast('dict[str, Any]', json.loads(self.run('get', kind, name, '-o', 'json')))
        except KubectlError as e:
            if '(NotFound)' in str(e):
                return None
            raise

    def service_selector(self, name: str) -> dict[str, str] | None:
        service = self.get('service', name)
        if service is None:
            return None
        return cast('dict[str, str]', service['spec'].get('selector') or {})

    def endpoint_pods(self, service: str) -> set[str]:
        """The pods a Service's EndpointSlices route to."""
        selector = f'kubernetes.io/service-name={service}'
        slices = json.loads(self.run('get', 'endpointslices', '-l', selector, '-o', 'json'))
        items = cast('list[dict[str, Any]]', slices['items'])
        endpoints: list[dict[str, Any]] = []
        for item in items:
            endpoints.extend(item.get('endpoints') or [])
        return {
            endpoint['targetRef']['name']
            for endpoint in endpoints
            if endpoint.get('targetRef', {}).get('kind') == 'Pod'
        }


def force_leader_change(juju: jubilant.Juju, kubectl: Kubectl, leader: str, timeout: float) -> str:
    """Make Juju elect another leader by keeping the leader's pod down; return the new leader.

    The how-to: remove the leader (machine charms) or stop its agent
    (Kubernetes charms), then wait up to 60 s: Juju renews a leader's lease
    every 30 s for 60 s, and elects another unit once it runs out. Deleting the
    pod stops the agent, but the StatefulSet recreates the pod under the same
    unit name, and an agent that is back before the lease ran out just renews
    it. So the old pod is deleted again whenever it is back while no other
    unit leads.
    """
    pod = pod_name(leader)
    deleted_uid: str | None = None
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        current = get_leader_unit(juju)
        if current is not None and current != leader:
            logger.info('%s leads after %.0fs', current, time.monotonic() - start)
            return current
        obj = kubectl.get('pod', pod)
        back = (
            obj is not None
            and 'deletionTimestamp' not in obj['metadata']
            and obj['metadata']['uid'] != deleted_uid
        )
        if back:
            assert obj is not None
            deleted_uid = obj['metadata']['uid']
            logger.info('deleting pod %s (leader: %s)', pod, current)
            kubectl.run('delete', 'pod', pod, '--wait=false')
        time.sleep(2)
    raise AssertionError(f'no unit other than {leader} became leader in {timeout:.0f}s')
