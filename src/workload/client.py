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

``valkey`` is imported inside the functions: Juju starts a new Python process
for every hook, and most hooks never talk to a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
    address: Address, passwords: Sequence[str], timeout: float
) -> Generator[Client | NoConnection, None, None]:
    """A connection to ``address`` authenticated with the first accepted password.

    Yields the client, or a :class:`NoConnection` saying why there is none
    (``not-running``, ``auth-refused``); closes the client on exit.
    """
    import valkey.exceptions  # noqa: PLC0415

    for password in dict.fromkeys(passwords):
        try:
            # Connects and sends AUTH now (one connection, nothing else: no
            # PING), so that a refused password is told apart here.
            client = _client(address, password, timeout)
        except valkey.exceptions.AuthenticationError:
            continue
        except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
            yield NoConnection('not-running', _connection_reason(address, e))
            return
        try:
            yield client
        finally:
            client.close()
        return
    yield NoConnection('auth-refused', 'the server refused every password it was given')


def _client(address: Address, password: str, timeout: float) -> Client:
    import valkey  # noqa: PLC0415
    from valkey.backoff import NoBackoff  # noqa: PLC0415
    from valkey.retry import Retry  # noqa: PLC0415

    host, port = address
    # No CLIENT SETINFO after AUTH: two round trips fewer per connection
    # (valkey-py accepts None here; its annotations say str).
    no_setinfo: dict[str, typing.Any] = {'lib_name': None, 'lib_version': None}
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
    )
    return typing.cast('Client', client)


def _connection_reason(address: Address, error: Exception) -> str:
    kind = 'timed out' if 'timeout' in type(error).__name__.lower() else 'refused'
    return f'no answer from {address[0]}:{address[1]} (connection {kind})'


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
