# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The charm's YAML files say each key once.

PyYAML keeps the last of two equal keys without a word, as charmcraft and Juju
may: two ``requires:`` blocks would silently drop every endpoint of the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ('metadata.yaml', 'config.yaml', 'actions.yaml', 'charmcraft.yaml')


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys: list[object] = [
            self.construct_object(key, deep=deep)  # pyright: ignore[reportUnknownMemberType]
            for key, _ in node.value
        ]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f'repeated keys {repeated}', node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize('name', [n for n in FILES if (ROOT / n).exists()])
def test_no_key_is_repeated(name: str) -> None:
    yaml.load((ROOT / name).read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader


def test_a_repeated_key_is_caught() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match='requires'):
        yaml.load('requires: {a: 1}\nrequires: {b: 2}\n', Loader=_UniqueKeyLoader)  # noqa: S506
