# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Connections from the charm to a Valkey server: authenticated, one attempt, bounded.

The charm container and the workload container are containers of one pod, and
"every container in a Pod shares the network namespace, including the IP
address and network ports. Inside a Pod (and only then), the containers that
belong to the Pod can communicate with one another using localhost"
(https://kubernetes.io/docs/concepts/workloads/pods/#pod-networking). So the
charm reaches its own Valkey on ``127.0.0.1:6379`` (:data:`LOCAL`) with the
maintained client ``valkey`` (valkey-py), and the password travels only inside
the AUTH command, never in a process's arguments or environment (which
``pebble exec valkey-cli -a ...`` would need). Addresses are parameters, so
that tests can run each unit's server on its own loopback port.

While TLS is on, the charm's connections use it too, and check the server's
certificate against the CA the unit serves with (:class:`Tls`). Its own
server, on the loopback address, is checked by the chain alone (its
certificate names the unit's DNS names, not ``127.0.0.1``); another unit's
server by the chain and by the stable DNS name the charm reached it by.

``valkey`` is imported inside the functions: Juju starts a new Python process
for every hook, and most hooks never talk to a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import typing
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Final, Literal, Protocol

from workload.config import PORT

Address = tuple[str, int]
"""``(host, port)`` of a Valkey server as this process reaches it."""
Resolve = Callable[[str], Address]
"""Maps a unit's stable DNS name to the ``(host, port)`` Valkey should use for it."""

LOCAL: Final[Address] = ('127.0.0.1', PORT)
"""This unit's Valkey, seen from the charm container: the pod's loopback address."""
TIMEOUT: Final = 2.0
"""Seconds to wait for the local server to connect or answer."""
PEER_CONNECT_TIMEOUT: Final = 1.0
"""Seconds to wait for another unit's server before giving up on it."""


def same_host(host: str) -> Address:
    """The production mapping: a stable DNS name is used as is, on Valkey's port."""
    return (host, PORT)


@dataclasses.dataclass(frozen=True)
class Tls:
    """Reach the server over TLS, and trust the certificate ``ca`` signed."""

    ca: str
    """PEM."""


Transport = Tls | None
"""How to reach a server: over TLS, or ``None``: plaintext."""
PLAINTEXT: Final[tuple[Transport, ...]] = (None,)


@dataclasses.dataclass(frozen=True)
class NoConnection:
    """Why :func:`authenticated` has no client to give."""

    status: Literal['not-running', 'auth-refused']
    reason: str
    """Never holds a password."""


class Commands(Protocol):
    """The part of ``valkey.Valkey`` (and of its pipeline) the charm uses, typed."""

    def execute_command(self, *args: str | int) -> object: ...  # noqa: D102


class Pipeline(Commands, Protocol):
    """A pipeline: commands sent together, replies read together."""

    def execute(self, raise_on_error: bool = True) -> list[object]: ...  # noqa: D102


class Client(Commands, Protocol):
    """One authenticated connection."""

    def pipeline(self, transaction: bool = True) -> Pipeline: ...  # noqa: D102

    def close(self) -> None: ...  # noqa: D102


@contextlib.contextmanager
def authenticated(
    address: Address,
    passwords: Sequence[str],
    timeout: float,
    transports: Sequence[Transport] = PLAINTEXT,
) -> Generator[Client | NoConnection, None, None]:
    """A connection to ``address`` authenticated with the first accepted password.

    ``transports`` are tried in order until one connects: while TLS is being
    turned on or off, first what the running server was started with, then
    what it is about to speak (a plaintext server answers a TLS handshake
    only when the timeout ends it, so the likely one goes first).

    Yields the client, or a :class:`NoConnection` saying why there is none
    (``not-running``, ``auth-refused``); closes the client on exit.
    """
    import valkey.exceptions  # noqa: PLC0415

    unreachable: list[str] = []
    for transport in dict.fromkeys(transports):
        for password in dict.fromkeys(passwords):
            try:
                # Connects and sends AUTH now (one connection, nothing else: no
                # PING), so that a refused password is told apart here.
                client = _client(address, password, timeout, transport)
            except valkey.exceptions.AuthenticationError:
                continue
            except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
                unreachable.append(_connection_reason(address, e, transport))
                break  # this transport does not reach it: another password will not help
            try:
                yield client
            finally:
                client.close()
            return
        else:
            yield NoConnection('auth-refused', 'the server refused every password it was given')
            return
    yield NoConnection('not-running', '; '.join(unreachable))


def _client(address: Address, password: str, timeout: float, transport: Transport) -> Client:
    import valkey  # noqa: PLC0415
    from valkey.backoff import NoBackoff  # noqa: PLC0415
    from valkey.retry import Retry  # noqa: PLC0415

    host, port = address
    # No CLIENT SETINFO after AUTH: two round trips fewer per connection
    # (valkey-py accepts None here; its annotations say str).
    no_setinfo: dict[str, typing.Any] = {'lib_name': None, 'lib_version': None}
    tls: dict[str, typing.Any] = {}
    if transport is not None:
        tls = {
            'ssl': True,
            'ssl_cert_reqs': 'required',  # the chain must lead to the unit's CA
            'ssl_ca_data': transport.ca,
            'ssl_check_hostname': not _is_loopback(host),
        }
    client = valkey.Valkey(
        host=host,
        port=port,
        password=password,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        decode_responses=True,
        # One connection, made here, and one attempt: a refused password or a
        # dead server is an answer, not something to retry behind the caller.
        single_connection_client=True,
        retry=Retry(NoBackoff(), 0),
        **no_setinfo,
        **tls,
    )
    return typing.cast('Client', client)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == 'localhost'


def _connection_reason(address: Address, error: Exception, transport: Transport) -> str:
    kind = 'timed out' if 'timeout' in type(error).__name__.lower() else 'refused'
    over = ' over TLS' if transport is not None else ''
    return f'no answer from {address[0]}:{address[1]}{over} (connection {kind})'


def pairs(reply: object) -> dict[str, str]:
    """``CONFIG GET``'s flat list (RESP2) as a dict."""
    if isinstance(reply, dict):
        items = typing.cast('dict[object, object]', reply)
        return {str(k): str(v) for k, v in items.items()}
    flat = [str(x) for x in typing.cast('list[object]', reply)]
    return dict(zip(flat[::2], flat[1::2], strict=True))


def primary_of(replication: Mapping[str, object]) -> Address:
    """The primary a replica's ``INFO replication`` names."""
    return (str(replication['master_host']), int(str(replication['master_port'])))


def info(reply: object) -> dict[str, object]:
    """``INFO``'s reply as a dict with string keys."""
    return {str(k): v for k, v in typing.cast('dict[object, object]', reply).items()}


def scrub(text: str, passwords: Iterator[str] | Sequence[str]) -> str:
    """``text`` with every password replaced: Valkey may quote a refused value back."""
    for password in passwords:
        if password:
            text = text.replace(password, '***')
    return text
