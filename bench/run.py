#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Benchmark valkey-leader-k8s beside a minimal charm: `tox -e bench` (`python -m bench.run`).

A benchmark, not a test: it prints a table and writes it as JSON (by default
to bench/results/latest.json) so that runs can be compared. See
docs/benchmark.md for what each figure means and the targets.

1. Import cost: fresh processes importing the charm as dispatch does.
2. Per-event cost: ops.testing ``Context.run`` of six kinds of event.
3. Side effects over a scripted sequence of twenty events.
4. Ratios of 1 and 2 to the minimal charm's, and the targets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import ssl
import subprocess
import sys
import tempfile
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
# The charm's modules, and tests/ for the fake Kubernetes API server.
sys.path[:0] = [str(REPO_ROOT / 'src'), str(REPO_ROOT)]

from bench import deployment, event_cost, import_cost, side_effects  # noqa: E402
from bench.stats import Ratio, Summary  # noqa: E402
from tests.fake_kubernetes import FakeKubernetes  # noqa: E402

CHARM: Final = 'valkey-leader-k8s'
BASELINE: Final = 'minimal'
IMPORT_TARGET: Final = 1.15
EVENT_TARGET: Final = 2.0


def main() -> int:
    """Run everything, print the table, write the JSON."""
    args = parse_args()
    report: dict[str, Any] = {'machine': machine(), 'settings': vars(args) | {'output': None}}
    with tempfile.TemporaryDirectory(prefix='valkey-bench-') as tmp:
        root = Path(tmp)
        report['import'] = run_import(root, args.import_runs)
        print_import(report['import'], args.import_runs)
        kubernetes = install_fake_kubernetes(root)
        charms = deployment.load_charms()
        report['events'] = run_events(root, charms, kubernetes, args.warmup, args.event_runs)
        print_events(report['events'], args.warmup, args.event_runs)
        report['side_effects'] = run_side_effects(root, charms[CHARM], kubernetes)
        print_side_effects(report['side_effects'])
    report['targets'] = targets(report)
    print_targets(report['targets'])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + '\n')
    print(f'\nWrote {args.output}')
    return 0


def parse_args() -> argparse.Namespace:
    """Where to write, and how many repetitions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        'output',
        nargs='?',
        type=Path,
        default=REPO_ROOT / 'bench' / 'results' / 'latest.json',
        help='where to write the JSON (default: bench/results/latest.json)',
    )
    parser.add_argument('--import-runs', type=int, default=40, help='fresh processes per charm')
    parser.add_argument('--event-runs', type=int, default=200, help='timed runs per event')
    parser.add_argument('--warmup', type=int, default=20, help='untimed runs per event first')
    return parser.parse_args()


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = 'unknown'
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    commit = subprocess.run(
        ['git', 'rev-parse', '--short', 'HEAD'],  # noqa: S607 - git from PATH
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'commit': commit,
        'machine': platform.machine(),
        'cpu': cpu,
        'python': platform.python_version(),
        'ops': metadata.version('ops'),
        'jinja2': metadata.version('jinja2'),
        'lightkube': metadata.version('lightkube'),
    }


# ---------------------------------------------------------------- 1. import


def run_import(root: Path, runs: int) -> dict[str, Any]:
    """Fresh processes, as the packed charm's dispatch starts them."""
    print(f'1. import: {runs} fresh processes per charm and figure ...', flush=True)
    packed = root / 'packed'
    charm = import_cost.PackedCharm.build(
        CHARM, REPO_ROOT / 'src', packed, templates=REPO_ROOT / 'templates'
    )
    baseline = import_cost.PackedCharm.build(
        BASELINE, deployment.MINIMAL_CHARM.parent, packed, templates=None
    )
    rows: dict[str, tuple[Summary, Summary]] = {
        "python -c 'import charm'": import_cost.measure_pair(
            charm, baseline, 'import charm', 'import charm', runs
        ),
        "-X importtime: 'charm' (no interpreter start-up)": import_cost.measure_importtime(
            charm, baseline, runs
        ),
        'src/charm.py run as dispatch runs it (no ops.main)': import_cost.measure_pair(
            charm, baseline, import_cost.AS_DISPATCH, import_cost.AS_DISPATCH, runs
        ),
        'import charm, src/ bytecode not writable': import_cost.measure_cold_bytecode(
            charm, baseline, runs
        ),
        'import charm + render valkey.conf once': import_cost.measure_pair(
            charm, baseline, import_cost.RENDER_ONCE, 'import charm', runs
        ),
        'import charm + primary_service (leader, k8s)': import_cost.measure_pair(
            charm, baseline, import_cost.LEADER_K8S_PATH, 'import charm', runs
        ),
    }
    extra = sorted(
        charm.modules_imported('import charm') - baseline.modules_imported('import charm')
    )
    return {
        'rows': {
            name: {
                CHARM: ours.as_json(),
                BASELINE: theirs.as_json(),
                'ratio': Ratio.of(ours, theirs).as_json(),
            }
            for name, (ours, theirs) in rows.items()
        },
        'packages_beyond_baseline': extra,
    }


def print_import(result: dict[str, Any], runs: int) -> None:
    """The import table."""
    print(f'\n1. Import cost, fresh processes (ms: median (p25-p75), n={runs})')
    header = f'{"":50} {CHARM:>24} {BASELINE:>24} {"ratio (paired IQR)":>22}'
    print(header)
    print('-' * len(header))
    for name, row in result['rows'].items():
        print(f'{name:50} {_cell(row[CHARM]):>24} {_cell(row[BASELINE]):>24} {_ratio(row):>22}')
    beyond = ', '.join(result['packages_beyond_baseline']) or 'none'
    print(f'Packages `import charm` loads beyond the minimal charm: {beyond}')


# ---------------------------------------------------------------- 2. events


def install_fake_kubernetes(root: Path) -> FakeKubernetes:
    """The leader's Kubernetes calls go to the tests' fake API server, which counts them.

    In a pod, lightkube trusts the one CA in the service account's ``ca.crt``:
    the fake's client gets one CA certificate too, not the system's whole bundle.
    """
    import primary_service  # noqa: PLC0415 - lightkube, for the sections run in this process

    fake = FakeKubernetes()
    bundle = ssl.get_default_verify_paths().cafile
    if bundle and Path(bundle).is_file():
        text = Path(bundle).read_text()
        end = '-----END CERTIFICATE-----'
        if end in text:
            ca = root / 'ca.crt'
            ca.write_text(text[: text.index(end) + len(end)] + '\n')
            fake.certificate_authority = str(ca)
    primary_service.make_client = fake.make_client
    return fake


def run_events(
    root: Path,
    charms: dict[str, deployment.CharmType],
    kubernetes: FakeKubernetes,
    warmup: int,
    runs: int,
) -> dict[str, Any]:
    """ops.testing Context.run per event, both charms, same input states."""
    print(f'\n2. events: {warmup} warm-up + {runs} timed runs per charm and event ...', flush=True)
    world = deployment.Deployment(root / 'events', deployment.Metadata.load())
    cases = event_cost.build_cases(world, charms[CHARM])
    result: dict[str, Any] = {}
    for case in cases:
        does = event_cost.what_it_does(world, case, charms[CHARM], kubernetes)
        timings = event_cost.time_case(world, case, charms, warmup=warmup, runs=runs)
        result[case.name] = {
            CHARM: timings[CHARM].as_json(),
            BASELINE: timings[BASELINE].as_json(),
            'ratio': Ratio.of(timings[CHARM], timings[BASELINE]).as_json(),
            'added_ms': round(timings[CHARM].median - timings[BASELINE].median, 4),
            'side_effects': dict(+does),
        }
    return result


def print_events(result: dict[str, Any], warmup: int, runs: int) -> None:
    """The per-event table."""
    print(
        f'\n2. Per-event cost, ops.testing Context.run '
        f'(ms: median (p25-p75), {warmup} warm-up + {runs} timed runs)'
    )
    header = (
        f'{"event":52} {CHARM:>24} {BASELINE:>24} {"ratio (paired IQR)":>22} '
        f'{"+ms":>6}  what it does'
    )
    print(header)
    print('-' * len(header))
    for name, row in result.items():
        does = ', '.join(f'{c}={n}' for c, n in row['side_effects'].items()) or 'nothing'
        print(
            f'{name:52} {_cell(row[CHARM]):>24} {_cell(row[BASELINE]):>24} '
            f'{_ratio(row):>22} {row["added_ms"]:6.2f}  {does}'
        )


# ---------------------------------------------------------- 3. side effects


def run_side_effects(
    root: Path, charm: deployment.CharmType, kubernetes: FakeKubernetes
) -> dict[str, Any]:
    """The twenty scripted events, on a fresh deployment of this charm."""
    print('\n3. side effects: 20 scripted events ...', flush=True)
    world = deployment.Deployment(root / 'script', deployment.Metadata.load())
    rows = side_effects.run_script(world, charm, kubernetes)
    totals: Counter[str] = Counter()
    for row in rows:
        totals.update(row.counts)
    return {
        'events': [row.as_json() for row in rows],
        'totals': {c: totals[c] for c in side_effects.REPORTED},
        'rules': side_effects.check_rules(rows),
    }


def print_side_effects(result: dict[str, Any]) -> None:
    """One line per scripted event."""
    columns = {
        'push': 'pushes',
        'restart': 'restarts',
        'secret': 'secret revisions',
        'peer': 'peer-data writes',
        'k8s': 'kubernetes calls',
        'layer': 'layers',
        'chown': 'chowns',
        'exec': 'execs',
        'pebble': 'pebble calls',
    }
    print('\n3. Side effects over 20 scripted events (this charm; the minimal charm has none)')
    print(
        '   secret = secret revisions, peer = peer-data writes, k8s = Kubernetes API calls,'
        ' pebble = Pebble API calls'
    )
    header = f'{"#":>2} {"phase":13} {"unit":>4} {"leader":>6} {"event":36}' + ''.join(
        f'{label:>8}' for label in columns
    )
    print(header + '  verdict')
    print('-' * (len(header) + 9))
    for row in result['events']:
        counts = row['counts']
        print(
            f'{row["number"]:2} {row["phase"]:13} {row["unit"]:4} {row["leader"]:6} '
            f'{row["event"]:36}'
            + ''.join(f'{counts[key]:8}' for key in columns.values())
            + f'  {row["verdict"]}'
        )
    totals = result['totals']
    print(
        f'{"":2} {"total":13} {"":4} {"":6} {"":36}'
        + ''.join(f'{totals[key]:8}' for key in columns.values())
    )
    for rule, ok in result['rules'].items():
        print(f'  {"PASS" if ok else "FAIL"}  {rule}')


# ------------------------------------------------------------- 4. targets


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target, with the measured figure and whether it is met."""
    whole = report['import']['rows']["python -c 'import charm'"]['ratio']['of_medians']
    out: list[dict[str, Any]] = [
        {
            'target': f'import cost <= {IMPORT_TARGET}x the minimal charm (whole process)',
            'measured': f'{whole:.3f}x',
            'met': whole <= IMPORT_TARGET,
        }
    ]
    for name, row in report['events'].items():
        ratio = row['ratio']['of_medians']
        out.append(
            {
                'target': f'{name} <= {EVENT_TARGET}x the minimal charm',
                'measured': f'{ratio:.3f}x (+{row["added_ms"]:.2f} ms)',
                'met': ratio <= EVENT_TARGET,
            }
        )
    for rule, ok in report['side_effects']['rules'].items():
        out.append({'target': rule, 'measured': 'see section 3', 'met': ok})
    return out


def print_targets(result: list[dict[str, Any]]) -> None:
    """Met or not, and the figure."""
    print('\n4. Targets')
    for target in result:
        verdict = 'MET    ' if target['met'] else 'NOT MET'
        print(f'  {verdict} {target["target"]}: {target["measured"]}')


def _cell(summary: dict[str, Any]) -> str:
    return f'{summary["median_ms"]:.2f} ({summary["p25_ms"]:.2f}-{summary["p75_ms"]:.2f})'


def _ratio(row: dict[str, Any]) -> str:
    ratio = row['ratio']
    return f'{ratio["of_medians"]:.3f}x ({ratio["paired_p25"]:.2f}-{ratio["paired_p75"]:.2f})'


if __name__ == '__main__':
    sys.exit(main())
