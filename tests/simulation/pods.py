# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Pods as Linux network namespaces: a pod network and cluster DNS on one machine.

Test code only. What Kubernetes gives a pod, and how it is made here (as root):

* **a network namespace per pod** (``ip netns add``), with its own loopback
  (the charm reaches its Valkey on ``127.0.0.1:6379`` as in a pod, where the
  containers share one network namespace) and one interface, ``eth0``, with
  the pod's address in :data:`SUBNET`;
* **the pod network**: each ``eth0`` is one end of a veth pair whose other
  end is on a bridge. The bridge lives in a namespace of its own (the
  "cluster" namespace), not in the machine's: no interface, address or
  route is added to the machine's namespace, so the pods reach one another
  and nothing else. :data:`SUBNET` exists only inside these namespaces;
* **cluster DNS** as one hosts file that every namespace sees as
  ``/etc/hosts``: ``ip netns exec <ns>`` bind-mounts ``/etc/netns/<ns>/hosts``
  over ``/etc/hosts`` for what it runs, and that file is a symbolic link to
  the cluster's file (written in place, so processes already running see the
  change). A unit's stable name ``<app>-<n>.<app>-endpoints.<model>.svc.cluster.local``
  resolves to its pod's address while the pod exists, and not at all once it
  is deleted; ``<app>-primary.<model>.svc.cluster.local`` resolves to the pod the
  Service selects (``kube-proxy`` would route its virtual IP there).
  ``/etc/netns/<ns>/resolv.conf`` names no server: a name missing from the
  file fails at once instead of being sent to the machine's DNS server;
* **hooks in the pod**: the simulation runs every hook in its own process,
  so the calling thread enters the pod's network namespace for the hook
  (:meth:`Cluster.inside`, ``setns(2)``: it changes only the calling thread)
  and the process sees the cluster's hosts file as ``/etc/hosts`` in a
  mount namespace of its own (``unshare(2)`` when a cluster opens, a slave of
  the machine's; the machine's ``/etc/hosts`` is never touched).

Faults: :meth:`Cluster.delete_pod` (the namespace and every process in it
go, the name stops resolving), :meth:`Cluster.add_pod` again (a new address,
as a recreated pod gets), :meth:`Cluster.cut` and :meth:`Cluster.restore` (a
partition: the pod's end of the link loses its carrier; the pod keeps running
and reaches its own address and loopback).

Every namespace made here is named ``vksim-<pid>-...`` and removed on
:meth:`Cluster.close`, with its ``/etc/netns`` directory, even when a test
fails; namespaces whose process is gone are removed on the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final

import redis
import redis.connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..workload.valkey_server import HOST, Client, ServerError, ValkeyServer, binary, launcher

PREFIX: Final = 'vksim-'
"""Every namespace this module makes starts with it, then the creating process's id."""
SUBNET: Final = '10.77.0'
"""The pod network (a /24): addresses exist only inside the namespaces made here."""
FIRST_HOST: Final = 10
CLIENT_HOST: Final = 200
NETNS_DIR: Final = Path('/run/netns')
ETC_NETNS: Final = Path('/etc/netns')
HOSTS_SIZE: Final = 8192
"""The cluster hosts file always has this size: rewritten with one write, never truncated."""
COMMAND_TIMEOUT: Final = 10.0
PORT: Final = 6379
_BASE_HOSTS: Final = '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n'
_NO_DNS_SERVER: Final = (
    '# No name server: pod names come from /etc/hosts (the simulated cluster DNS).\n'
    'options attempts:1 timeout:1\n'
)

_CLONE_NEWNS: Final = 0x00020000
_CLONE_NEWNET: Final = 0x40000000
_MS_BIND: Final = 4096
_MS_REC: Final = 16384
_MS_SLAVE: Final = 1 << 19
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(RuntimeError):
    """A namespace, link or mount could not be made or removed."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(f'{what}: {os.strerror(errno)}')


@functools.cache
def _machine_mount_namespace() -> int:
    """The mount namespace this process started in, to run ``ip`` and servers in."""
    return os.open('/proc/self/ns/mnt', os.O_RDONLY)


def _in_machine_mounts() -> None:
    """``preexec_fn``: the child (one thread) leaves the private mount namespace, if any."""
    _libc.setns(_machine_mount_namespace(), _CLONE_NEWNS)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in the machine's mount namespace, bounded in time."""
    result = subprocess.run(
        argv,
        check=False,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        preexec_fn=_in_machine_mounts,
    )
    if check and result.returncode != 0:
        raise NamespaceError(f'{" ".join(argv)}: {result.stderr.strip()}')
    return result


@functools.cache
def unavailable() -> str | None:
    """Why pods cannot be made here, or ``None`` if they can (root, ``ip``, namespaces)."""
    if os.geteuid() != 0:
        return 'network namespaces need root (CI runs as root)'
    if shutil.which('ip') is None:
        return 'the ip command (iproute2) is missing'
    _machine_mount_namespace()
    probe = f'{PREFIX}{os.getpid()}-probe'
    try:
        made = run('ip', 'netns', 'add', probe, check=False)
    except OSError as e:
        return f'cannot run ip: {e}'
    if made.returncode != 0:
        return f'cannot create a network namespace: {made.stderr.strip()}'
    run('ip', 'netns', 'del', probe, check=False)
    return None


def _owner_pid(name: str) -> int | None:
    rest = name.removeprefix(PREFIX).split('-', 1)[0]
    return int(rest) if rest.isdigit() else None


def remove_leftovers() -> list[str]:
    """Remove the namespaces of earlier runs whose process is gone; return their names."""
    removed: list[str] = []
    if not NETNS_DIR.is_dir():
        return removed
    for path in sorted(NETNS_DIR.glob(f'{PREFIX}*')):
        pid = _owner_pid(path.name)
        if pid is not None and Path(f'/proc/{pid}').exists():
            continue
        _remove_namespace(path.name)
        removed.append(path.name)
    for path in sorted(ETC_NETNS.glob(f'{PREFIX}*')) if ETC_NETNS.is_dir() else ():
        pid = _owner_pid(path.name)
        if pid is None or not Path(f'/proc/{pid}').exists():
            shutil.rmtree(path, ignore_errors=True)
    return removed


def _remove_namespace(name: str) -> None:
    """Kill every process in the namespace, delete it and its ``/etc/netns`` directory."""
    try:
        pids = run('ip', 'netns', 'pids', name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run('ip', 'netns', 'del', name, check=False)
    finally:
        shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


_process_mounts_lock = threading.Lock()
_process_sees: list[Path] = []
"""The hosts file bound over this process's ``/etc/hosts`` (at most one)."""


def _bind_into_process(hosts: Path, resolv: Path) -> None:
    """This process's ``/etc/hosts`` becomes ``hosts``, in a private mount namespace.

    ``unshare(CLONE_NEWNS)`` gives the calling thread (and what it starts
    from then on) a copy of the mounts. Made a slave of the machine's, it
    receives the mounts ``ip netns add`` makes there (``/run/netns/<ns>``)
    and sends none back: the bind mounts stay in this process.
    """
    with _process_mounts_lock:
        if _process_sees:
            raise NamespaceError('another cluster already provides this process its DNS')
        _machine_mount_namespace()
        _check(_libc.unshare(_CLONE_NEWNS), 'unshare(CLONE_NEWNS)')
        _check(_libc.mount(b'none', b'/', None, _MS_REC | _MS_SLAVE, None), 'slave mounts')
        _check(_libc.mount(bytes(hosts), b'/etc/hosts', None, _MS_BIND, None), 'bind hosts')
        _check(
            _libc.mount(bytes(resolv), b'/etc/resolv.conf', None, _MS_BIND, None), 'bind resolv'
        )
        _process_sees.append(hosts)


def _unbind_from_process() -> None:
    with _process_mounts_lock:
        if _process_sees:
            _libc.umount2(b'/etc/resolv.conf', 0)
            _libc.umount2(b'/etc/hosts', 0)
            _process_sees.clear()


@dataclasses.dataclass
class Pod:
    """One pod: a network namespace, its address, and its link to the bridge."""

    name: str
    """The pod's Kubernetes name (``valkey-leader-k8s-0``)."""
    namespace: str
    """The network namespace's name (``vksim-<pid>-valkey-leader-k8s-0``)."""
    address: str
    port_on_bridge: str
    """The bridge's end of the pod's veth pair, in the cluster namespace."""
    linked: bool = True

    @property
    def exec_prefix(self) -> list[str]:
        """What runs a command inside the pod, with the cluster's hosts file as ``/etc/hosts``."""
        return ['ip', 'netns', 'exec', self.namespace]


class Cluster:
    """The pods of one simulation, their network and their names (see the module)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = f'{PREFIX}{os.getpid()}'
        self.hub = f'{self.tag}-cluster'
        self.hosts_file = workdir / 'cluster-hosts'
        self.resolv_file = workdir / 'cluster-resolv.conf'
        self.pods: dict[str, Pod] = {}
        self.names: dict[str, str] = {}
        """Cluster DNS: name -> address."""
        self._next_host = FIRST_HOST
        self._next_port = 0
        self._made: list[str] = []
        self._lock = threading.Lock()

    # --------------------------------------------------------------- lifecycle

    def __enter__(self) -> Cluster:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self) -> None:
        remove_leftovers()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_hosts()
        self.resolv_file.write_text(_NO_DNS_SERVER)
        self._add_namespace(self.hub)
        run('ip', '-n', self.hub, 'link', 'add', 'pods', 'type', 'bridge')
        run('ip', '-n', self.hub, 'link', 'set', 'pods', 'up')
        _bind_into_process(self.hosts_file, self.resolv_file)

    def close(self) -> None:
        """Remove every namespace made here (and what runs in it), the files, the mounts."""
        with contextlib.ExitStack() as stack:
            stack.callback(_unbind_from_process)
            for namespace in reversed(self._made):
                stack.callback(_remove_namespace, namespace)
            self._made.clear()
            self.pods.clear()

    # ------------------------------------------------------------------- pods

    def add_pod(self, name: str, *, dns_names: tuple[str, ...] = ()) -> Pod:
        """Create the pod ``name`` with a new address; ``dns_names`` resolve to it."""
        if name in self.pods:
            raise NamespaceError(f'pod {name} exists')
        with self._lock:
            address = f'{SUBNET}.{self._next_host}'
            self._next_host += 1
            port_on_bridge = f'p{self._next_port}'
            self._next_port += 1
        namespace = f'{self.tag}-{name}'
        self._add_namespace(namespace)
        run('ip', '-n', namespace, 'link', 'set', 'lo', 'up')
        run(
            'ip', '-n', self.hub, 'link', 'add', port_on_bridge, 'type', 'veth',
            'peer', 'name', 'eth0', 'netns', namespace,
        )  # fmt: skip
        run('ip', '-n', self.hub, 'link', 'set', port_on_bridge, 'master', 'pods', 'up')
        run('ip', '-n', namespace, 'addr', 'add', f'{address}/24', 'dev', 'eth0')
        run('ip', '-n', namespace, 'link', 'set', 'eth0', 'up')
        pod = Pod(name, namespace, address, port_on_bridge)
        self.pods[name] = pod
        for dns_name in dns_names:
            self.names[dns_name] = address
        self._write_hosts()
        return pod

    def add_client(self, name: str = 'client') -> Pod:
        """A namespace for a client application, at a fixed address off the pods' range."""
        pod = self.add_pod(name)
        run('ip', '-n', pod.namespace, 'addr', 'flush', 'dev', 'eth0')
        pod.address = f'{SUBNET}.{CLIENT_HOST}'
        run('ip', '-n', pod.namespace, 'addr', 'add', f'{pod.address}/24', 'dev', 'eth0')
        return pod

    def delete_pod(self, name: str) -> None:
        """The pod is gone: every process in it, its namespace, and its names."""
        pod = self.pods.pop(name)
        self.names = {n: a for n, a in self.names.items() if a != pod.address}
        self._write_hosts()
        self._made.remove(pod.namespace)
        _remove_namespace(pod.namespace)
        run('ip', '-n', self.hub, 'link', 'del', pod.port_on_bridge, check=False)

    def cut(self, name: str) -> None:
        """Partition the pod: its link loses its carrier; inside it, everything runs on."""
        pod = self.pods[name]
        run('ip', '-n', self.hub, 'link', 'set', pod.port_on_bridge, 'down')
        pod.linked = False

    def restore(self, name: str) -> None:
        """Heal the partition."""
        pod = self.pods[name]
        run('ip', '-n', self.hub, 'link', 'set', pod.port_on_bridge, 'up')
        pod.linked = True

    # -------------------------------------------------------------------- DNS

    def point(self, dns_name: str, pod_name: str | None) -> None:
        """``dns_name`` resolves to ``pod_name``'s address from now on (``None``: to nothing)."""
        pod = self.pods.get(pod_name) if pod_name is not None else None
        names = dict(self.names)
        if pod is None:
            names.pop(dns_name, None)
        else:
            names[dns_name] = pod.address
        if names != self.names:
            self.names = names
            self._write_hosts()

    def address_of(self, pod_name: str) -> str | None:
        pod = self.pods.get(pod_name)
        return pod.address if pod is not None else None

    def pod_at(self, address: str) -> Pod | None:
        return next((pod for pod in self.pods.values() if pod.address == address), None)

    def _write_hosts(self) -> None:
        """Rewrite the cluster's hosts file in place, in one write of a fixed size.

        Processes started with ``ip netns exec`` hold the file by its inode: a
        new file would not reach them. One write of the whole (padded) file
        never shows a reader an empty file.
        """
        lines = [_BASE_HOSTS, *(f'{a} {n}\n' for n, a in sorted(self.names.items()))]
        text = ''.join(lines).encode()
        if len(text) >= HOSTS_SIZE:
            raise NamespaceError('the cluster hosts file is full')
        padded = text + b'#' * (HOSTS_SIZE - len(text) - 1) + b'\n'
        fd = os.open(self.hosts_file, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, padded, 0)
        finally:
            os.close(fd)

    # ------------------------------------------------------------- namespaces

    def _add_namespace(self, namespace: str) -> None:
        etc = ETC_NETNS / namespace
        etc.mkdir(parents=True, exist_ok=True)
        # Ours: removed with the namespace, even if the next step fails.
        self._made.append(namespace)
        (etc / 'hosts').symlink_to(self.hosts_file)
        (etc / 'resolv.conf').symlink_to(self.resolv_file)
        run('ip', 'netns', 'add', namespace)

    @contextlib.contextmanager
    def inside(self, pod: Pod | str) -> Generator[None]:
        """The calling thread is in the pod's network namespace until the block ends.

        Sockets made meanwhile stay in that namespace after the block.
        """
        namespace = pod.namespace if isinstance(pod, Pod) else self.pods[pod].namespace
        with enter(namespace):
            yield


@contextlib.contextmanager
def enter(namespace: str) -> Generator[None]:
    """The calling thread runs in the network namespace ``namespace`` during the block."""
    home = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / namespace, os.O_RDONLY)
        try:
            _check(_libc.setns(target, _CLONE_NEWNET), f'setns into {namespace}')
        finally:
            os.close(target)
        try:
            yield
        finally:
            _check(_libc.setns(home, _CLONE_NEWNET), 'setns back')
    finally:
        os.close(home)


class PodServer(ValkeyServer):
    """A unit's ``valkey-server`` in its pod, from the charm's file as it is.

    The file says ``port 6379`` and ``bind * -::*``: in the pod's namespace that
    is its loopback and its pod address, nothing else. Nothing is overridden
    but ``--dir`` (see :func:`valkey_server.launcher`): the ``replicaof`` and
    ``replica-announce-ip`` lines, with their DNS names, are the charm's.
    """

    def __init__(
        self, cluster: Cluster, pod_name: str, config_file: Path, *, data_dir: Path, log_file: Path
    ) -> None:
        super().__init__(config_file, data_dir=data_dir, log_file=log_file, port=PORT)
        self.cluster = cluster
        self.pod_name = pod_name

    @property
    def pod(self) -> Pod:
        pod = self.cluster.pods.get(self.pod_name)
        if pod is None:
            raise ServerError(f'the pod {self.pod_name} does not exist')
        return pod

    @property
    def argv(self) -> list[str]:
        command = [str(binary()), str(self.config_file), '--dir', str(self.data_dir)]
        return [*self.pod.exec_prefix, *launcher(), *command]

    def restart(self, *, replicaof: int | None = None) -> None:
        """Restart from the file; ``replicaof`` is ignored: the file names the primary."""
        del replicaof
        self.stop()
        self.start()

    def _answers(self) -> bool | None:
        with self.cluster.inside(self.pod):
            return super()._answers()

    def client(self, password: str | None = None, *, username: str | None = None) -> Client:
        return PodClient(self.pod.namespace, password, username=username)


class _PodConnection(redis.connection.Connection):
    """A connection whose socket is made inside a pod's network namespace."""

    def __init__(self, *, namespace: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # pyright: ignore[reportUnknownMemberType]
        self.namespace = namespace

    def _connect(self) -> socket.socket:
        with enter(self.namespace):
            return super()._connect()


class PodClient(Client):
    """A client in a pod's namespace: ``host`` as the pod resolves and reaches it."""

    def __init__(
        self,
        namespace: str,
        password: str | None,
        *,
        host: str = HOST,
        username: str | None = None,
        timeout: float = 5,
    ) -> None:
        super().__init__(PORT, password, username=username)
        pool = redis.ConnectionPool(
            connection_class=_PodConnection,
            namespace=namespace,
            host=host,
            port=PORT,
            username=username,
            password=password,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            protocol=2,
            retry=Retry(NoBackoff(), retries=0),
        )
        self._raw = redis.Redis(connection_pool=pool)
