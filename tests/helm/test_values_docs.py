"""values.yaml, values.schema.json and the README's values table describe the same values,
and every value in values.yaml is preceded by a comment that starts with its name."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART

pytestmark = pytest.mark.helm

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def documented_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> dict[str, bool]:
    """{dotted path: is a leaf}. Objects the schema closes (additionalProperties: false) are
    described key by key; open ones (securityContext, config, ...) as one value."""
    out: dict[str, bool] = {}
    for key, value in values.items():
        path = prefix + key
        node = schema["properties"][key]
        closed = isinstance(value, dict) and value and node.get("additionalProperties") is False
        out[path] = not closed
        if closed:
            out.update(documented_paths(value, node, path + "."))
    return out


PATHS = documented_paths(VALUES, SCHEMA)


# Read only by a parent chart (`condition: datahubsync.enabled`), so it has no default here.
PARENT_ONLY = {"enabled"}


def test_schema_and_values_name_the_same_top_level_keys() -> None:
    assert set(SCHEMA["properties"]) - PARENT_ONLY == set(VALUES)
    assert PARENT_ONLY <= set(SCHEMA["properties"])


def test_values_yaml_passes_its_own_schema_outline() -> None:
    """Every default has the type the schema asks for (hub.url's emptiness aside)."""
    for path in PATHS:
        value: Any = VALUES
        node: dict[str, Any] = SCHEMA
        for part in path.split("."):
            value, node = value[part], node["properties"][part]
        types = node.get("type")
        if types is None:
            continue
        types = types if isinstance(types, list) else [types]
        python = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list,
                  "null": type(None), "number": (int, float)}
        assert any(isinstance(value, python[t]) for t in types), f"{path}: {value!r} is not {types}"


def test_every_value_has_a_comment_starting_with_its_name() -> None:
    stack: list[tuple[int, str]] = []
    comment: list[str] = []  # the comment block right above the current line
    seen = set()
    for line in VALUES_TEXT.splitlines():
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([p for _, p in stack] + [match.group(2)])
            stack.append((indent, match.group(2)))
            if path in PATHS:
                seen.add(path)
                assert comment and comment[0].startswith(f"# {path}:"), f"{path}: no '# {path}:' comment above it"
        comment = comment + [line.strip()] if line.strip().startswith("#") else []
    assert seen == set(PATHS)


def test_readme_table_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    rows = set(re.findall(r"^\| `([A-Za-z.]+)` \|", readme, flags=re.M))
    leaves = {path for path, leaf in PATHS.items() if leaf}
    assert rows == leaves

