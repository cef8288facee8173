# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The Valkey workload: what the config file says and how Pebble runs it.

Pure functions over small typed values. Nothing here knows about Juju events,
leadership or the charm; ``src/charm.py`` decides *what* to run, this module
says *how* it is written down.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
from pathlib import Path
from typing import Final

from ops import pebble

CONTAINER: Final = 'valkey'
SERVICE: Final = 'valkey'
PORT: Final = 6379
CONFIG_PATH: Final = '/etc/valkey/valkey.conf'
DATA_DIR: Final = '/var/lib/valkey'
# The official image's non-root user and group ("valkey", created with -u/-g 999).
WORKLOAD_UID: Final = 999
WORKLOAD_GID: Final = 999
TEMPLATE_NAME: Final = 'valkey.conf.j2'
PASSWORD_LENGTH: Final = 48
_PASSWORD_ALPHABET: Final = string.ascii_letters + string.digits


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValkeySettings:
    """Everything one unit's config file depends on."""

    password: str
    primary_address: str | None
    """The primary's stable DNS name, or ``None`` when this unit is the primary."""
    log_level: str
    maxmemory: str
    """A Valkey size such as ``100mb``; empty means no limit."""
    maxmemory_policy: str
    announce_host: str | None = None
    """This unit's own stable DNS name, announced to its primary (``replica-announce-ip``).

    A primary lists each replica in ``INFO replication`` by the address the
    replica announces; without it, by the pod IP the connection came from.
    ``FAILOVER TO <host> <port>`` finds its target in that list, so a new
    leader can name itself there only if it announced the name it knows
    itself by. ``None`` leaves the line out (Valkey then lists the pod IP).
    """

    @property
    def is_primary(self) -> bool:
        """Whether this unit's file makes it the primary."""
        return self.primary_address is None


def generate_password() -> str:
    """A new random password: letters and digits only, so it is easy to pass around."""
    return ''.join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def valkey_quote(value: str) -> str:
    r"""Quote ``value`` as one argument of a Valkey config directive.

    A user-supplied password may hold spaces, quotes, ``#`` or newlines; written
    raw, a newline would let it add directives of its own. Inside double quotes
    Valkey understands ``\"``, ``\\`` and ``\xHH``, so every byte outside
    printable ASCII is written as ``\xHH``.
    """
    out: list[str] = []
    for byte in value.encode():
        char = chr(byte)
        if char in '"\\':
            out.append('\\' + char)
        elif 0x20 <= byte <= 0x7E:
            out.append(char)
        else:
            out.append(f'\\x{byte:02x}')
    return '"' + ''.join(out) + '"'


_QUOTED_ESCAPES: Final = {'n': '\n', 'r': '\r', 't': '\t', 'b': '\b', 'a': '\a'}
_HEX_DIGITS: Final = frozenset('0123456789abcdefABCDEF')


def valkey_unquote(quoted: str) -> str | None:
    r"""The value ``valkey_quote`` wrote: the inverse of :func:`valkey_quote`.

    Reads one double-quoted argument as Valkey does (``\"``, ``\\``, ``\xHH``,
    and ``\n \r \t \b \a``), nothing after the closing quote. Returns ``None``
    for anything else (unquoted, unterminated, trailing text, bytes that are
    not UTF-8), so that a caller can tell "no usable value" apart.
    """
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        return None
    out = bytearray()
    body = quoted[1:-1]
    index = 0
    while index < len(body):
        char = body[index]
        if char == '"':
            return None  # an unescaped quote ends the argument before the end
        if char != '\\':
            out += char.encode()
            index += 1
            continue
        escaped = body[index + 1 : index + 2]
        hex_digits = body[index + 2 : index + 4]
        if escaped == 'x' and len(hex_digits) == 2 and set(hex_digits) <= _HEX_DIGITS:
            out.append(int(hex_digits, 16))
            index += 4
        elif escaped in _QUOTED_ESCAPES:
            out += _QUOTED_ESCAPES[escaped].encode()
            index += 2
        elif escaped:
            out += escaped.encode()
            index += 2
        else:
            return None  # a lone backslash before the closing quote
    try:
        return out.decode()
    except UnicodeDecodeError:
        return None


def requirepass_from_config(text: str) -> str | None:
    """The password a rendered ``valkey.conf`` requires, or ``None`` if it has none.

    The charm passes it to ``live.apply_live`` as the password the running
    server may still have: after a rotation, the file on disk (and the server
    started from it) holds the previous password until this hook replaces it.
    Reads the last ``requirepass`` line, as Valkey does when a directive repeats.
    """
    found: str | None = None
    for line in text.splitlines():
        name, _, value = line.strip().partition(' ')
        if name.lower() == 'requirepass':
            found = valkey_unquote(value.strip())
    return found


def render_config(settings: ValkeySettings, templates_dir: Path) -> str:
    """Render ``valkey.conf`` for one unit from the jinja2 template."""
    # Imported here, not at the top: Juju starts a new Python process for every
    # hook, and jinja2 is most of what importing this charm costs beyond ops
    # (about 12 ms of 15 ms on the machine in docs/benchmark.md). A hook that
    # renders pays it either way; the others are spared it: every event the
    # charm does not observe (install, start, relation-joined, ...), and every
    # hook where there is nothing to render yet (a follower waiting for its
    # leader, an invalid config, Pebble not up).
    import jinja2  # noqa: PLC0415

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - a Valkey config file, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters['valkey_quote'] = valkey_quote
    template = environment.get_template(TEMPLATE_NAME)
    return template.render(
        port=PORT,
        data_dir=DATA_DIR,
        password=settings.password,
        primary_address=settings.primary_address,
        log_level=settings.log_level,
        maxmemory=settings.maxmemory or '0',
        maxmemory_policy=settings.maxmemory_policy,
        announce_host=settings.announce_host,
    )


def pebble_layer() -> pebble.Layer:
    """The Pebble layer that runs Valkey from the rendered file.

    The password is only in the 0600 file: never in the command line or the
    environment, which anyone who can read the Pebble plan or /proc could see.
    """
    layer: pebble.LayerDict = {
        'summary': 'Valkey',
        'description': 'Valkey, configured by the valkey-leader-k8s charm',
        'services': {
            SERVICE: {
                'override': 'replace',
                'summary': 'Valkey server',
                'command': f'valkey-server {CONFIG_PATH}',
                'startup': 'enabled',
                'user-id': WORKLOAD_UID,
                'group-id': WORKLOAD_GID,
            }
        },
        'checks': {
            'valkey-ready': {
                'override': 'replace',
                'level': 'ready',
                'tcp': {'port': PORT},
            }
        },
    }
    return pebble.Layer(layer)


_VERSION = re.compile(r'\bv=(?P<version>[0-9][0-9A-Za-z.+-]*)')


def parse_version(output: str) -> str | None:
    """Extract ``9.1.0`` from ``valkey-server --version`` output."""
    match = _VERSION.search(output)
    return match['version'] if match else None
