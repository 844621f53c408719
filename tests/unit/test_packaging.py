"""Packaging: every package folder is installed, and the engine never imports a domain."""

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for top, name in (("sciflow", "sciflow"), ("domains", "sciflow_domains")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    assert found == listed, f"unlisted: {found - listed}; listed but missing: {listed - found}"


def test_engine_imports_no_domain():
    for path in (ROOT / "sciflow").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                for name in names:
                    assert not (name or "").startswith("sciflow_domains"), f"{path} imports {name}"


def test_geometry_imports_only_torch():
    for path in (ROOT / "sciflow" / "geometry").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("sciflow")
            ):
                assert node.module.startswith("sciflow.geometry"), f"{path} imports {node.module}"
