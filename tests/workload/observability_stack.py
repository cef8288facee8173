# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A real ``redis_exporter`` per unit and a real Prometheus, fed what the charm publishes.

Both come from Debian (``prometheus-redis-exporter`` and ``prometheus``; ``.ci/run``
installs them). What stands in for COS is only what Prometheus's side of the
``metrics-endpoint`` relation does with the databags (Canonical's
``prometheus_scrape`` library, ``MetricsEndpointConsumer``): every ``*:<port>``
target becomes one static config per unit at the address that unit published,
labelled with the topology from ``scrape_metadata`` and the unit's name, and
the ``alert_rules`` become a rules file. The addresses are the only override,
as for the servers (``valkey_server``): a unit's DNS name and port stand in as
a loopback port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final

import yaml

from .valkey_server import HOST, eventually, free_port

EXPORTER: Final = 'prometheus-redis-exporter'
"""Debian's name for redis_exporter's binary."""
PROMETHEUS: Final = 'prometheus'


def missing_programs() -> list[str]:
    return [p for p in (EXPORTER, PROMETHEUS, 'promtool') if shutil.which(p) is None]


class Process:
    """A program run in its own process group, with its output in a log file."""

    def __init__(self, argv: list[str], log_file: Path) -> None:
        self.argv = argv
        self.log_file = log_file
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_file.open('ab')
        self._process = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._log is not None:
            self._log.close()

    def log_text(self) -> str:
        return self.log_file.read_text(errors='replace') if self.log_file.exists() else ''


def http_get(url: str, timeout: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.read()
    except (urllib.error.URLError, OSError):
        return None


def exporter_argv(
    command: str, *, valkey_port: int, password_file: Path, listen_port: int
) -> list[str]:
    """The charm's exporter command, run from Debian's binary with loopback addresses.

    Everything else in the command (the user, the flags) is the charm's. Raises
    ``AssertionError`` if the command does not have the flags the overrides replace.
    """
    program, *args = command.split()
    overrides = {
        '-redis.addr': f'redis://{HOST}:{valkey_port}',
        '-redis.password-file': str(password_file),
        '-web.listen-address': f'{HOST}:{listen_port}',
    }
    seen: set[str] = set()
    out = [shutil.which(EXPORTER) or EXPORTER]
    for arg in args:
        name, _, value = arg.partition('=')
        flag = '-' + name.lstrip('-')
        if flag in overrides:
            seen.add(flag)
            value = overrides[flag]
        out.append(f'{flag}={value}' if value else flag)
    assert program.endswith('redis_exporter'), command
    assert seen == set(overrides), f'the command lacks {set(overrides) - seen}'
    return out


def password_file_for(text: str, valkey_port: int) -> str:
    """The charm's password file, keyed by the loopback address the test's exporter uses."""
    ((_, password),) = json.loads(text).items()
    return json.dumps({f'redis://{HOST}:{valkey_port}': password})


def prometheus_config(
    app_data: Mapping[str, str],
    unit_data: Mapping[str, Mapping[str, str]],
    endpoints: Mapping[str, str],
    rules_file: Path,
) -> dict[str, Any]:
    """What Prometheus's side of the relation makes of the databags.

    ``endpoints`` maps each unit name to the loopback ``host:port`` standing in
    for the address it published and the job's port.
    """
    metadata = json.loads(app_data['scrape_metadata'])
    topology = {
        'juju_model': metadata['model'],
        'juju_model_uuid': metadata['model_uuid'],
        'juju_application': metadata['application'],
        'juju_charm': metadata['charm_name'],
    }
    prefix = f'juju_{metadata["model"]}_{metadata["model_uuid"][:8]}_{metadata["application"]}'
    jobs: list[dict[str, Any]] = []
    for job in json.loads(app_data['scrape_jobs']):
        static_configs: list[dict[str, Any]] = []
        for static in job['static_configs']:
            for target in static['targets']:
                host, port = target.split(':')
                assert host == '*', f'only per-unit targets are expected: {target}'
                for unit, bag in sorted(unit_data.items()):
                    published = f'{bag["prometheus_scrape_unit_address"]}:{port}'
                    assert published, unit
                    static_configs.append(
                        {
                            'targets': [endpoints[bag['prometheus_scrape_unit_name']]],
                            'labels': {
                                **topology,
                                'juju_unit': bag['prometheus_scrape_unit_name'],
                            },
                        }
                    )
        jobs.append(
            {
                **{k: v for k, v in job.items() if k != 'static_configs'},
                'job_name': f'{prefix}_{job["job_name"]}',
                'static_configs': static_configs,
                'relabel_configs': [
                    {
                        'source_labels': [
                            'juju_model',
                            'juju_model_uuid',
                            'juju_application',
                            'juju_unit',
                        ],
                        'separator': '_',
                        'target_label': 'instance',
                        'regex': '(.*)',
                    }
                ],
            }
        )
    rules_file.write_text(yaml.safe_dump(json.loads(app_data['alert_rules'])))
    return {
        'global': {'scrape_interval': '1s', 'evaluation_interval': '1s'},
        'rule_files': [str(rules_file)],
        'scrape_configs': jobs,
    }


class Prometheus:
    """A real Prometheus on a loopback port, with its own storage."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config_file = workdir / 'prometheus.yml'
        config_file.write_text(yaml.safe_dump(config))
        self.process = Process(
            [
                shutil.which(PROMETHEUS) or PROMETHEUS,
                f'--config.file={config_file}',
                f'--storage.tsdb.path={workdir / "data"}',
                f'--web.listen-address={HOST}:{self.port}',
            ],
            workdir / 'prometheus.log',
        )

    def start(self) -> None:
        self.process.start()
        eventually(
            lambda: True if http_get(f'{self.url}/-/ready') is not None else None,
            timeout=30,
            what=f'Prometheus to be ready:\n{self.process.log_text()[-2000:]}',
        )

    def stop(self) -> None:
        self.process.stop()

    @property
    def url(self) -> str:
        return f'http://{HOST}:{self.port}'

    def api(self, path: str, **params: str) -> Any:
        body = http_get(f'{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}')
        assert body is not None, f'Prometheus did not answer {path}'
        answer = json.loads(body)
        assert answer['status'] == 'success', answer
        return answer['data']

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector), raising if Prometheus refuses it."""
        data = self.api('query', query=expr)
        assert data['resultType'] == 'vector', data
        return data['result']

    def query_range(self, expr: str, start: float, end: float, step: str) -> list[dict[str, Any]]:
        data = self.api('query_range', query=expr, start=str(start), end=str(end), step=step)
        return data['result']

    def targets_up(self) -> dict[str, str]:
        """Each active target's ``juju_unit`` and health."""
        active = self.api('targets')['activeTargets']
        return {t['labels']['juju_unit']: t['health'] for t in active}

    def alerts(self) -> set[tuple[str, str, str]]:
        """``(alert name, state, juju_unit or '')`` of every pending or firing alert."""
        return {
            (a['labels']['alertname'], a['state'], a['labels'].get('juju_unit', ''))
            for a in self.api('alerts')['alerts']
        }
