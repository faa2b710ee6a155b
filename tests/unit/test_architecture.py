"""The import rules that keep the architecture visible (docs/design.md): each package imports only
the packages below it. Every import counts, also one made inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

# package -> the app packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "hub": {"core"},
    "package": {"core"},
    "observe": {"core"},
    "serve": {"core", "package"},
    "sync": {"core", "hub", "package", "observe"},
    "commands": {"core", "hub", "sync", "observe", "crontab.parser"},
    "crontab": {"core", "observe", "commands"},
}
# modules held to a stricter rule than their package
STRICT: dict[str, set[str]] = {
    "crontab.parser": set(),
    "crontab.scheduler": {"crontab.parser"},
}
# the only upward imports: config validates sections with the parsers of the packages that own them
EXCEPTIONS = {
    ("core.config", "crontab.parser"), ("core.config", "observe.metrics"), ("core.config", "observe.notify"),
    ("core.config", "sync.hooks"),
}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(APP).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """The app modules (dotted, without the `app.` prefix) that a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path.relative_to(APP.parent)}: relative import; use `from app.x import ...`")
            if node.module == "app":
                found.update(alias.name for alias in node.names if (APP / alias.name).is_dir())
            elif node.module.startswith("app."):
                found.add(node.module[len("app."):])
                found.update(f"{node.module[len('app.'):]}.{a.name}" for a in node.names
                             if (APP / node.module[len("app."):].replace(".", "/") / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name[len("app."):] for a in node.names if a.name.startswith("app."))
    return found


MODULES = sorted(p for p in APP.rglob("*.py") if p.parent != APP)


def test_every_module_sits_in_a_package_with_a_docstring() -> None:
    loose = sorted(p.name for p in APP.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside any package: {loose}"
    for package in sorted(p for p in APP.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert package.name in ALLOWED, f"app/{package.name}: a package without import rules"
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"app/{package.name}/__init__.py: say what it owns and may import"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_follow_the_rules(path: Path) -> None:
    me = _module_name(path)
    package = me.split(".")[0]
    allowed = STRICT.get(me, ALLOWED[package] | {package})
    for target in sorted(_imports(path)):
        target_package = target.split(".")[0]
        if (me, target) in EXCEPTIONS or target_package == package and me not in STRICT:
            continue
        if any(target == rule or target.startswith(rule + ".") or target_package == rule for rule in allowed):
            continue
        raise AssertionError(f"app.{me} imports app.{target}: {package} may import {sorted(allowed) or 'nothing'}")


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from app.sync.run import SyncRun\n")
    assert "sync.run" in _imports(bad)
