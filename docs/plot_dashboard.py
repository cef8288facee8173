# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

r"""Plot the dashboard's main panels from a real Prometheus: docs/observability-dashboard.png.

Grafana cannot run here, so this draws what its panels would show, from the
dashboard's own queries (``src/observability/dashboards/valkey.json``) against
real data: three units of the charm on real Valkey servers, each with a real
``redis_exporter``, scraped by a real Prometheus with the jobs the charm
publishes (``tests/workload/cos_stack.py``), while a client writes, the leader
changes (a switchover), and a replica's link is cut then restored.

Run by hand (matplotlib is not a test dependency), from the repository root::

    python3 -m venv /tmp/plot && /tmp/plot/bin/pip install matplotlib \\
        -r requirements.txt -r tests/requirements.txt -r tests/workload/requirements.txt
    PYTHONPATH=src /tmp/plot/bin/python -m docs.plot_dashboard
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use('Agg')
import matplotlib.pyplot as plt

from tests.workload import cos_stack

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'docs' / 'observability-dashboard.png'
PANELS = (
    'Role per unit',
    'Replication offset',
    'Replica lag (bytes behind the primary)',
    'Replica link to the primary',
    'Memory',
    'Commands per second',
)


def series_label(template: str, metric: dict[str, str]) -> str:
    """Grafana's legend: ``{{label}}`` replaced by the series' label values."""
    out = template
    for key, value in metric.items():
        out = out.replace('{{' + key + '}}', value)
    return out


def main() -> int:
    """Run the story, then plot each main panel's queries over it."""
    board = json.loads(cos_stack.DASHBOARD.read_text())
    panels = {p['title']: p for p in board['panels'] if p.get('targets')}
    with tempfile.TemporaryDirectory() as tmp, cos_stack.Stack(Path(tmp)) as stack:
        events = stack.story()
        end = time.time()
        fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 2.3 * len(PANELS)), sharex=True)
        start = stack.started
        for ax, title in zip(axes, PANELS, strict=True):
            for target in panels[title]['targets']:
                expr = cos_stack.concrete(target['expr'])
                for result in stack.prometheus.query_range(expr, start, end, '1s'):
                    xs = [float(t) - start for t, _ in result['values']]
                    ys = [float(v) for _, v in result['values']]
                    label = series_label(target['legendFormat'], result['metric'])
                    ax.step(xs, ys, where='post', label=label)
            for when, what in events:
                ax.axvline(when - start, color='grey', linestyle=':', linewidth=1)
                if title == PANELS[0]:
                    ax.annotate(what, (when - start, 1.05), fontsize=7, rotation=0)
            ax.set_title(title, fontsize=9, loc='left')
            ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.0, 1.0))
            ax.tick_params(labelsize=7)
        role_axis: Any = axes[0]
        role_axis.set_yticks([0, 1], ['replica', 'primary'])
        axes[-1].set_xlabel('seconds', fontsize=8)
        fig.suptitle(
            "The dashboard's main panels, from its own queries against a real Prometheus "
            '(Grafana does not run here)',
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(OUT, dpi=110)
    print(f'wrote {OUT.relative_to(ROOT)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
