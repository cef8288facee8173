# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What a unit's ``valkey.conf`` says: the settings as a typed value, rendered by jinja2.

Pure functions over small typed values. Nothing here knows about Juju events,
leadership or the charm; ``src/charm.py`` decides *what* to run, this module
says *how* it is written down.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Final

PORT: Final = 6379
# Pebble, and so Valkey, run as the image's "valkey" user (uid/gid 999 in
# metadata.yaml), who cannot create /etc/valkey. The official image makes
# /run/valkey for that user (valkey-io/valkey-container, 9.1/debian/Dockerfile):
# outside the data volume, so the password is never in a storage snapshot.
CONFIG_PATH: Final = '/run/valkey/valkey.conf'
DATA_DIR: Final = '/var/lib/valkey'
# Beside the config file, outside the data volume: a private key is never in a
# storage snapshot, and a new pod starts without any (the charm writes them again).
TLS_DIR: Final = '/run/valkey/tls'
MIN_REPLICAS_MAX_LAG: Final = 10
"""Seconds since a replica's last acknowledgement for it to count as in sync.

A replica acknowledges its offset every second; Valkey's own default is 10."""
TEMPLATE_NAME: Final = 'valkey.conf.j2'
# What a client relation's user may run, besides its own keys and channels.
# Least privilege for an application that stores data: every data type's read
# and write commands, key-space commands (DEL, EXPIRE, SCAN...), Pub/Sub,
# MULTI/EXEC and connection commands (PING, HELLO, CLIENT SETNAME), then
# minus everything that reaches beyond its own keys: @admin (CONFIG, DEBUG,
# MONITOR, REPLICAOF...), @dangerous (FLUSHALL, KEYS, SWAPDB, CLIENT KILL...)
# and @scripting (functions are shared by every user, and FUNCTION FLUSH
# would delete other clients' functions). Rules apply left to right.
CLIENT_COMMANDS: Final = (
    '-@all +@read +@write +@keyspace +@pubsub +@transaction +@connection '
    '-@admin -@dangerous -@scripting'
)


# Valkey's memory units: k/m/g are powers of 1000, kb/mb/gb powers of 1024.
_MEMORY_UNITS: Final = {
    '': 1,
    'b': 1,
    'k': 1000,
    'kb': 1024,
    'm': 1000**2,
    'mb': 1024**2,
    'g': 1000**3,
    'gb': 1024**3,
}
_MEMORY_SIZE = re.compile(r'(?P<number>[0-9]{1,20})(?P<unit>[kmg]?b?)', re.IGNORECASE)
# Valkey accepts sizes up to 2**64 - 1 bytes but silently wraps a larger
# number-times-unit product; capping at 2**63 - 1 keeps every accepted value
# meaning what it says (and is far beyond any real memory).
MAXMEMORY_LIMIT_BYTES: Final = 2**63 - 1


def maxmemory_bytes(value: str) -> int:
    """Return the number of bytes a Valkey memory size means.

    Raises:
        ValueError: if ``value`` is not a size Valkey accepts.
    """
    match = _MEMORY_SIZE.fullmatch(value)
    if match is None:
        raise ValueError(value)
    size = int(match['number']) * _MEMORY_UNITS[match['unit'].lower()]
    if size > MAXMEMORY_LIMIT_BYTES:
        raise ValueError(value)
    return size


_SHA256_HEX = re.compile(r'[0-9a-f]{64}')
_USER_NAME = re.compile(r'relation-[0-9]{1,9}(-[0-9A-Za-z_-]{1,64})?')
# A literal prefix followed by one '*': no other glob character, no space,
# nothing Valkey's config parser would read as a second argument.
KEY_PATTERN = re.compile(r'[0-9A-Za-z._:/-]{1,64}\*')


@dataclasses.dataclass(frozen=True, kw_only=True)
class AclUser:
    """A client relation's Valkey user, as every unit writes it into its file.

    Valkey does not replicate ACL users from the primary: each unit must
    define them itself. Only the SHA-256 of the password is here (Valkey
    accepts ``#<hex>`` in a ``user`` line), never the password.
    """

    name: str
    password_sha256: str
    key_pattern: str
    """The keys (and Pub/Sub channels) the user may touch, such as ``myapp:*``."""

    def __post_init__(self) -> None:
        """Refuse anything that could add a directive or widen the user's rights."""
        if not _USER_NAME.fullmatch(self.name):
            raise ValueError(f'not a client user name: {self.name!r}')
        if not _SHA256_HEX.fullmatch(self.password_sha256):
            raise ValueError(f'{self.name}: the password hash is not a SHA-256 hex digest')
        if not KEY_PATTERN.fullmatch(self.key_pattern):
            raise ValueError(f'{self.name}: not a key prefix pattern: {self.key_pattern!r}')

    @property
    def acl_rules(self) -> str:
        """The rules of its ``user`` line: on, its password hash, its keys, its commands."""
        keys = self.key_pattern
        return f'on #{self.password_sha256} ~{keys} &{keys} {CLIENT_COMMANDS}'


_METRICS_RULES = re.compile(r'on #[0-9a-f]{64} resetkeys resetchannels -@all( \+[a-z|]+)+')


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricsUser:
    """The metrics exporter's Valkey user: reads the server's state, no key, no channel."""

    name: str
    acl_rules: str
    """Its ``user`` line's rules: on, its password's SHA-256, the commands it may run."""

    def __post_init__(self) -> None:
        """Refuse rules that grant keys, channels, or anything but single commands."""
        if not _METRICS_RULES.fullmatch(self.acl_rules):
            raise ValueError(f'{self.name}: not a read-only metrics user')


User = AclUser | MetricsUser
"""A user every unit writes into its file: a client relation's, or the exporter's."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TlsMaterial:
    """What a unit serves over TLS: its certificate (and intermediates), the CA, its key.

    Each certificate gets a directory of its own under :data:`TLS_DIR`, named
    after the certificate and the CA (never the key): a renewal changes the
    paths in the file, so the file changes, and the running server loads the
    new files with one ``CONFIG SET`` of them.
    """

    certificate_chain: str
    """PEM: the unit's certificate first, then each intermediate up to the CA."""
    ca: str
    """PEM: the CA that signed the chain; clients, replicas and the charm verify with it."""
    private_key: str = dataclasses.field(repr=False)
    """PEM: the unit's private key: never logged, never in the Pebble plan."""

    @property
    def directory(self) -> str:
        """``TLS_DIR/<16 hex digits of the SHA-256 of the certificate chain and CA>``."""
        digest = hashlib.sha256(f'{self.certificate_chain}\n{self.ca}'.encode()).hexdigest()
        return f'{TLS_DIR}/{digest[:16]}'

    @property
    def cert_file(self) -> str:
        """The path of ``cert.pem`` in the directory."""
        return f'{self.directory}/cert.pem'

    @property
    def key_file(self) -> str:
        """The path of ``key.pem`` in the directory."""
        return f'{self.directory}/key.pem'

    @property
    def ca_file(self) -> str:
        """The path of ``ca.pem`` in the directory."""
        return f'{self.directory}/ca.pem'


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
    users: tuple[User, ...] = ()
    """The client relations' users and the exporter's; ``default`` keeps ``password``."""
    announce_host: str | None = None
    """This unit's own stable DNS name, announced to its primary (``replica-announce-ip``).

    A primary lists each replica in ``INFO replication`` by the address the
    replica announces; without it, by the pod IP the connection came from.
    In a handover the old primary is told to replicate from the new one by
    this name (:mod:`workload.handover` checks the new leader announces it).
    ``None`` leaves the line out (Valkey then lists the pod IP).
    """
    tls: TlsMaterial | None = None
    """What to serve over TLS, or ``None``: plaintext only.

    With TLS, the port speaks TLS only (``port 0``, ``tls-port 6379``): a
    client that sends plaintext is refused, and the port number, the
    ``<app>-primary`` Service and the ``replicaof`` lines stay the same.
    """
    min_replicas_to_write: int = 0
    """How many replicas a primary needs in sync (``min-replicas-to-write``) to take a write.

    1 when the application has other units: a primary cut off from every
    replica (a partition, while Juju promotes another unit) refuses writes
    once its replicas' last acknowledgement is :data:`MIN_REPLICAS_MAX_LAG`
    seconds old, instead of taking writes that the promoted unit never gets.
    0 for a single unit, which has no replica to wait for.
    """


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


def tls_ca_file_from_config(text: str) -> str | None:
    """The CA file a rendered ``valkey.conf`` serves TLS with, or ``None``: plaintext.

    The file the charm is about to replace says how the running server speaks:
    the charm's own connection to it uses that first (a TLS client waits for
    a plaintext server's answer until it times out).
    """
    found: str | None = None
    for line in text.splitlines():
        name, _, value = line.strip().partition(' ')
        if name.lower() == 'tls-ca-cert-file':
            found = value.strip() or None
    return found


def render_config(settings: ValkeySettings, templates_dir: Path) -> str:
    """Render ``valkey.conf`` for one unit from the jinja2 template."""
    # Imported here, not at the top: Juju starts a new Python process for every
    # hook, and jinja2 is most of what importing this charm costs beyond ops.
    # A hook that renders pays it either way; the others are spared it: every
    # event the charm does not observe (install, start, relation-joined, ...),
    # and every hook with nothing to render yet (a follower waiting for its
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
        users=settings.users,
        announce_host=settings.announce_host,
        tls=settings.tls,
        min_replicas_to_write=settings.min_replicas_to_write,
        min_replicas_max_lag=MIN_REPLICAS_MAX_LAG,
    )
