# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A minimal fake Juju: the hook tools a unit agent puts on a charm's PATH.

Run as a program, this file *is* a hook tool: a wrapper script named after
the tool (``is-leader``, ``relation-get``, ...) execs it with the tool's name
and arguments. Each call is appended to a JSON-lines log, and the tools read
and write one JSON state file: leadership, config, the peer relation's data,
secrets, statuses, action results. The test sets the state up, runs the
packed charm's ``dispatch`` once per event, and reads both files back.

Only what a unit of this charm calls is implemented; any other tool fails
loudly, naming itself, so that a new hook tool call shows up as a failure
here rather than as a silent no-op. There is no Pebble (its socket path is
fixed, so ``Container.can_connect()`` is simply false) and no Kubernetes API.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

STATE_ENV: Final = 'FAKE_JUJU_STATE'
CALLS_ENV: Final = 'FAKE_JUJU_CALLS'

# Every hook tool name gets a wrapper, so that an unimplemented one fails with
# a clear message instead of "command not found".
HOOK_TOOLS: Final = (
    'action-fail',
    'action-get',
    'action-log',
    'action-set',
    'application-version-set',
    'close-port',
    'config-get',
    'credential-get',
    'goal-state',
    'is-leader',
    'juju-log',
    'juju-reboot',
    'leader-get',
    'leader-set',
    'network-get',
    'open-port',
    'opened-ports',
    'relation-get',
    'relation-ids',
    'relation-list',
    'relation-model-get',
    'relation-set',
    'resource-get',
    'secret-add',
    'secret-get',
    'secret-grant',
    'secret-ids',
    'secret-info-get',
    'secret-remove',
    'secret-revoke',
    'secret-set',
    'state-delete',
    'state-get',
    'state-set',
    'status-get',
    'status-set',
    'storage-add',
    'storage-get',
    'storage-list',
)

_VALUE_FLAGS: Final = frozenset(
    {
        '-r',
        '--relation',
        '--label',
        '--description',
        '--owner',
        '--log-level',
        '--format',
        '--expire',
        '--rotate',
        '--file',
    }
)


class ToolError(Exception):
    """The hook tool fails: its message goes to stderr, as Juju's would."""


def _parse(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split hook tool arguments into options and positional arguments."""
    options: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == '--':
            positional.extend(args[i + 1 :])
            break
        if arg.startswith('-') and '=' in arg:
            name, _, value = arg.partition('=')
            options[name] = value
        elif arg in _VALUE_FLAGS:
            options[arg] = args[i + 1]
            i += 1
        elif arg.startswith('-') and arg != '-':
            options[arg] = 'true'
        else:
            positional.append(arg)
        i += 1
    return options, positional


def _xid(secret_id: str) -> str:
    """``secret:ID`` and ``secret://MODEL/ID`` name the same secret."""
    return secret_id.rsplit('/', 1)[-1].removeprefix('secret:')


def _assignments(positional: list[str]) -> dict[str, str]:
    """``key=value`` arguments as a dict."""
    return {key: value for key, _, value in (arg.partition('=') for arg in positional)}


def _content(positional: list[str]) -> dict[str, str]:
    """Secret content from ``key=value`` or ``key#file=path`` arguments."""
    content: dict[str, str] = {}
    for arg in positional:
        key, _, value = arg.partition('=')
        if key.endswith('#file'):
            content[key.removesuffix('#file')] = Path(value).read_text()
        else:
            content[key] = value
    return content


def _find_secret(state: dict[str, Any], secret_id: str | None, label: str | None) -> str:
    secrets: dict[str, Any] = state['secrets']
    if secret_id is not None:
        xid = _xid(secret_id)
        if xid in secrets:
            return xid
    elif label is not None:
        for xid, secret in secrets.items():
            if secret['label'] == label:
                return xid
    raise ToolError(f'ERROR secret {secret_id or label!r} not found')


def _relation(state: dict[str, Any], options: Mapping[str, str]) -> dict[str, Any]:
    peers: dict[str, Any] = state['peers']
    ref = options.get('-r', options.get('--relation', f'{peers["endpoint"]}:{peers["id"]}'))
    if ref.rsplit(':', 1)[-1] != str(peers['id']):
        raise ToolError(f'ERROR relation {ref} not found')
    return peers


def _is_leader(state: dict[str, Any], args: list[str], stdin: str) -> str:
    return json.dumps(state['leader'])


def _juju_log(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    state['log'].append({'level': options.get('--log-level', 'INFO'), 'message': positional[-1]})
    return ''


def _config_get(state: dict[str, Any], args: list[str], stdin: str) -> str:
    _, positional = _parse(args)
    config: dict[str, Any] = state['config']
    return json.dumps(config.get(positional[0]) if positional else config)


def _relation_ids(state: dict[str, Any], args: list[str], stdin: str) -> str:
    _, positional = _parse(args)
    peers = state['peers']
    return json.dumps(
        [f'{peers["endpoint"]}:{peers["id"]}'] if positional == [peers['endpoint']] else []
    )


def _relation_list(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, _ = _parse(args)
    peers = _relation(state, options)
    if '--app' in options:
        return json.dumps(state['app'])
    return json.dumps([unit for unit in peers['units'] if unit != state['unit']])


def _relation_get(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    peers = _relation(state, options)
    key = positional[0] if positional and positional[0] != '-' else None
    unit = positional[1] if len(positional) > 1 else os.environ.get('JUJU_REMOTE_UNIT', '')
    if '--app' in options:
        data: dict[str, str] = peers['app_data']
    else:
        data = peers['unit_data'].get(unit, {})
    return json.dumps(data.get(key) if key else data)


def _relation_set(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    peers = _relation(state, options)
    changes: dict[str, str] = json.loads(stdin) if options.get('--file') == '-' else {}
    changes.update(_assignments(positional))
    if '--app' in options:
        if not state['leader']:
            raise ToolError('ERROR cannot write relation settings: permission denied')
        data: dict[str, str] = peers['app_data']
    else:
        data = peers['unit_data'].setdefault(state['unit'], {})
    for key, value in changes.items():
        if value:
            data[key] = value
        else:
            data.pop(key, None)
    return ''


def _secret_add(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    if not state['leader'] and options.get('--owner', 'application') == 'application':
        raise ToolError('ERROR this unit is not the leader')
    digest = hashlib.sha256(f'{len(state["secrets"])}{state["unit"]}'.encode()).hexdigest()
    xid = ''.join(c for c in digest if c in '0123456789abcdef')[:20]
    state['secrets'][xid] = {
        'label': options.get('--label'),
        'description': options.get('--description'),
        'revision': 1,
        'content': _content(positional),
    }
    return f'secret://{state["model_uuid"]}/{xid}\n'


def _secret_get(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    xid = _find_secret(state, positional[0] if positional else None, options.get('--label'))
    secret = state['secrets'][xid]
    if positional and '--label' in options:
        # With both an id and a label, Juju looks the secret up by id and labels it.
        secret['label'] = options['--label']
    return json.dumps(secret['content'])


def _secret_set(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    if not state['leader']:
        raise ToolError('ERROR this unit is not the leader')
    secret = state['secrets'][_find_secret(state, positional[0], None)]
    if content := _content(positional[1:]):
        secret['content'] = content
        secret['revision'] += 1
    if '--label' in options:
        secret['label'] = options['--label']
    return ''


def _secret_info_get(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    xid = _find_secret(state, positional[0] if positional else None, options.get('--label'))
    secret = state['secrets'][xid]
    info = {k: v for k, v in secret.items() if k != 'content' and v is not None}
    return json.dumps({f'secret://{state["model_uuid"]}/{xid}': info})


def _status_set(state: dict[str, Any], args: list[str], stdin: str) -> str:
    options, positional = _parse(args)
    target = 'app' if options.get('--application', 'false').lower() == 'true' else 'unit'
    state['status'][target] = {'status': positional[0], 'message': ' '.join(positional[1:])}
    return ''


def _application_version_set(state: dict[str, Any], args: list[str], stdin: str) -> str:
    _, positional = _parse(args)
    state['workload_version'] = positional[-1]
    return ''


def _action_get(state: dict[str, Any], args: list[str], stdin: str) -> str:
    return json.dumps(state['action']['params'])


def _action_set(state: dict[str, Any], args: list[str], stdin: str) -> str:
    _, positional = _parse(args)
    state['action']['results'].update(_assignments(positional))
    return ''


def _action_fail(state: dict[str, Any], args: list[str], stdin: str) -> str:
    _, positional = _parse(args)
    state['action']['failed'] = ' '.join(positional)
    return ''


def _action_log(state: dict[str, Any], args: list[str], stdin: str) -> str:
    _, positional = _parse(args)
    state['action']['log'].append(' '.join(positional))
    return ''


_HANDLERS: Final[dict[str, Callable[[dict[str, Any], list[str], str], str]]] = {
    'action-fail': _action_fail,
    'action-get': _action_get,
    'action-log': _action_log,
    'action-set': _action_set,
    'application-version-set': _application_version_set,
    'config-get': _config_get,
    'is-leader': _is_leader,
    'juju-log': _juju_log,
    'relation-get': _relation_get,
    'relation-ids': _relation_ids,
    'relation-list': _relation_list,
    'relation-set': _relation_set,
    'secret-add': _secret_add,
    'secret-get': _secret_get,
    'secret-info-get': _secret_info_get,
    'secret-set': _secret_set,
    'status-set': _status_set,
}


def _tool_main(argv: list[str]) -> int:
    tool, args = argv[1], argv[2:]
    state_path = Path(os.environ[STATE_ENV])
    stdin = '' if sys.stdin.isatty() else sys.stdin.read()
    with Path(os.environ[CALLS_ENV]).open('a') as calls:
        calls.write(json.dumps({'tool': tool, 'args': args, 'stdin': stdin}) + '\n')
    handler = _HANDLERS.get(tool)
    if handler is None:
        print(f'ERROR the fake Juju does not implement {tool}', file=sys.stderr)
        return 1
    state: dict[str, Any] = json.loads(state_path.read_text())
    try:
        output = handler(state, args, stdin)
    except ToolError as e:
        print(e, file=sys.stderr)
        return 1
    state_path.write_text(json.dumps(state, indent=1))
    sys.stdout.write(output)
    return 0


# ------------------------------------------------------------- test side


def new_state(
    *, unit: str, leader: bool, config: Mapping[str, Any], endpoint: str, peers: list[str]
) -> dict[str, Any]:
    """A unit's view of a fresh model: one peer relation, no data, no secrets."""
    app = unit.partition('/')[0]
    return {
        'unit': unit,
        'app': app,
        'model_uuid': '00000000-0000-4000-8000-000000000000',
        'leader': leader,
        'config': dict(config),
        'peers': {
            'endpoint': endpoint,
            'id': 7,
            'units': peers,
            'app_data': {},
            'unit_data': {},
        },
        'secrets': {},
        'status': {},
        'log': [],
        'action': {'params': {}, 'results': {}, 'failed': None, 'log': []},
    }


class FakeJuju:
    """The hook tools on disk, and one unit's state for them."""

    def __init__(self, directory: Path) -> None:
        self.bin = directory / 'bin'
        self.state_file = directory / 'state.json'
        self.calls_file = directory / 'calls.jsonl'
        self._last_unit: str | None = None
        self.bin.mkdir(parents=True)
        # -I: the charm runs with PYTHONPATH=lib:venv, which the tools must not see.
        command = shlex.join([sys.executable, '-I', str(Path(__file__).resolve())])
        for tool in HOOK_TOOLS:
            wrapper = self.bin / tool
            wrapper.write_text(f'#!/bin/sh\nexec {command} {tool} "$@"\n')
            wrapper.chmod(0o755)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    @state.setter
    def state(self, state: Mapping[str, Any]) -> None:
        self.state_file.write_text(json.dumps(state, indent=1))
        self.calls_file.write_text('')

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        """The hook tool calls since the state was last set, oldest first."""
        lines = self.calls_file.read_text().splitlines()
        calls = [json.loads(line) for line in lines if line]
        return [call for call in calls if tool is None or call['tool'] == tool]

    def dispatch(
        self,
        charm_dir: Path,
        python_bin: Path,
        event: str,
        **extra_env: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run the packed charm's ``dispatch`` the way the unit agent does, for one event.

        ``event`` is a hook name (``config-changed``) or ``actions/<name>``.
        Nothing of this process's environment is passed on: only what Juju
        sets, and a PATH of the runtime interpreter, the hook tools and /bin.
        """
        state = self.state
        if state['unit'] != self._last_unit:
            # Another unit (or this fixture's first): not the previous unit's ops state.
            (charm_dir / '.unit-state.db').unlink(missing_ok=True)
            self._last_unit = state['unit']
        env = {
            'PATH': f'{python_bin}:{self.bin}:/usr/bin:/bin',
            'LANG': 'C.UTF-8',
            'HOME': str(charm_dir),
            'JUJU_CHARM_DIR': str(charm_dir),
            'JUJU_UNIT_NAME': state['unit'],
            'JUJU_MODEL_NAME': 'packing',
            'JUJU_MODEL_UUID': state['model_uuid'],
            'JUJU_VERSION': '3.6.8',
            'JUJU_DISPATCH_PATH': event if event.startswith('actions/') else f'hooks/{event}',
            'JUJU_HOOK_NAME': '' if event.startswith('actions/') else event,
            STATE_ENV: str(self.state_file),
            CALLS_ENV: str(self.calls_file),
            **extra_env,
        }
        return subprocess.run(
            [str(charm_dir / 'dispatch')],
            cwd=charm_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


if __name__ == '__main__':
    sys.exit(_tool_main(sys.argv))
