"""The layers run one way: no import from a lower layer to a higher one, no import cycle between files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from import_graph import LAYERS, cycles, imports, layer_of, module_files, unplaced_packages, upward_imports

ROOT = Path(__file__).resolve().parents[1]


def _copy_sources(destination: Path) -> Path:
    for folder in ("api", "cli", "nas", "scaling"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_every_module_belongs_to_a_layer_and_every_sub_package_is_named():
    modules = module_files(ROOT)
    for module in modules:
        layer_of(module)
    assert unplaced_packages(modules) == []


def test_a_new_sub_package_left_out_of_the_layers_fails(tmp_path):
    root = _copy_sources(tmp_path)
    (root / "nas" / "planted").mkdir()
    (root / "nas" / "planted" / "__init__.py").write_text('"""A package nobody placed."""\n')
    assert unplaced_packages(module_files(root)) == ["effnet.nas.planted"]


def test_the_project_has_no_upward_import():
    assert upward_imports(imports(module_files(ROOT))) == []


def test_the_project_has_no_import_cycle():
    assert cycles(imports(module_files(ROOT))) == []


@pytest.mark.parametrize("where", ["module", "function", "type_checking"])
def test_a_planted_back_edge_fails(tmp_path, where):
    root = _copy_sources(tmp_path)
    target = root / "nas" / "errors.py"
    planted = {
        "module": "from effnet.cli import app\n",
        "function": "def _planted():\n    from effnet.scaling import family\n",
        "type_checking": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from effnet.nas.study import runner\n",
    }[where]
    before = set(upward_imports(imports(module_files(root))))
    target.write_text(target.read_text() + "\n" + planted)
    problems = sorted(set(upward_imports(imports(module_files(root)))) - before)
    assert len(problems) == 1
    assert problems[0].startswith("effnet.nas.errors (line ") and "layer foundation" in problems[0]


def test_a_planted_relative_back_edge_fails(tmp_path):
    root = _copy_sources(tmp_path)
    target = root / "nas" / "net" / "spec.py"
    before = set(upward_imports(imports(module_files(root))))
    target.write_text(target.read_text() + "\nfrom ..study import runner\n")
    problems = sorted(set(upward_imports(imports(module_files(root)))) - before)
    assert [problem.split(" (")[0] for problem in problems] == ["effnet.nas.net.spec"]
    assert "effnet.nas.study.runner" in problems[0]


def test_a_planted_cycle_within_a_layer_fails(tmp_path):
    root = _copy_sources(tmp_path)
    modules = module_files(root)
    # Find two files of the network layer where one imports the other, and close the circle.
    edge = next(
        edge
        for edge in imports(modules)
        if edge.importer.startswith("effnet.nas.net.") and edge.imported.startswith("effnet.nas.net.")
    )
    importer_file = modules[edge.imported]
    importer_file.write_text(importer_file.read_text() + f"\n\ndef _planted():\n    import {edge.importer}\n")
    found = cycles(imports(module_files(root)))
    assert any(edge.importer in group and edge.imported in group for group in found)


def test_the_layers_are_named_once_each():
    names = [name for name, _ in LAYERS]
    prefixes = [prefix for _, owned in LAYERS for prefix in owned]
    assert len(set(names)) == len(names) and len(set(prefixes)) == len(prefixes)
