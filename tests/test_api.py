"""The Python API: what `import effnet` offers, the README's example as written, and a library call that leaves
the process as it found it."""

from __future__ import annotations

import ast
import importlib
import math
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

import effnet

README = Path(__file__).resolve().parents[1] / "README.md"
API_INIT = Path(__file__).resolve().parents[1] / "api" / "__init__.py"
TINY_SPACE = str(Path(__file__).parent / "data" / "tiny_space.yaml")


def test_every_exported_name_resolves_and_import_is_lazy():
    for name in effnet.__all__:
        assert getattr(effnet, name) is not None
    assert set(effnet.__all__) >= {
        "load_spec",
        "dump_spec",
        "build_model",
        "count_flops",
        "scale",
        "search",
        "grid_scale",
        "export_family",
        "SearchConfig",
        "SearchResult",
        "GridConfig",
        "GridResult",
        "InputError",
    }
    with pytest.raises(AttributeError):
        effnet.no_such_thing  # noqa: B018
    probe = "import sys, effnet; print('torch' in sys.modules, 'optuna' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == ["False", "False"]


def test_the_type_checking_imports_are_the_exports_name_for_name_and_module_for_module():
    """Editors and type checkers read the `if TYPE_CHECKING:` imports; `__getattr__` reads `_EXPORTS`: one may
    not name a thing, or a module, the other does not."""
    tree = ast.parse(API_INIT.read_text())
    exports = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [target.id for target in node.targets if isinstance(target, ast.Name)] == ["_EXPORTS"]
    )
    exported = {key.value: value.value for key, value in zip(exports.keys, exports.values, strict=True)}
    guard = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    )
    imported: dict[str, str] = {}
    for node in guard.body:
        assert isinstance(node, ast.ImportFrom), f"line {node.lineno}: only `from module import name` belongs here"
        for alias in node.names:
            assert alias.asname is None and alias.name not in imported, f"line {node.lineno}: {alias.name}"
            imported[alias.name] = node.module
    assert imported == exported
    for name, module in exported.items():
        assert getattr(importlib.import_module(module), name) is getattr(effnet, name)


def _b0():
    return effnet.reference_b0()


PAPER = (1.2, 1.1, 1.15)
WRONG_VALUES = {  # a public call given a value of the wrong kind: each once raised a TypeError, ValueError,
    # OverflowError or AttributeError from deep inside, and is now an InputError naming the value
    "scale, a NaN depth": (
        lambda: effnet.scale(_b0(), depth=math.nan, width=1.0, resolution=224),
        "depth must be a finite number, got nan",
    ),
    "scale, an infinite width": (
        lambda: effnet.scale(_b0(), depth=1.0, width=math.inf, resolution=224),
        "width must be a finite number, got inf",
    ),
    "scale, a resolution as text": (
        lambda: effnet.scale(_b0(), depth=1.0, width=1.0, resolution="224"),
        "resolution must be a number, got '224'",
    ),
    "official_preset, a number": (lambda: effnet.official_preset(3), "unknown preset 3; choose one of b0, b1"),
    "FamilyConfig, a path for the base": (
        lambda: effnet.FamilyConfig("b0.yaml", effnet.Coefficients(*PAPER)),
        "base must be a NetworkSpec (effnet.load_spec(path)), got str",
    ),
    "FamilyConfig, a tuple for the coefficients": (
        lambda: effnet.FamilyConfig(_b0(), PAPER),
        "coefficients must be effnet.Coefficients(alpha, beta, gamma), got tuple",
    ),
    "FamilyConfig, no phi": (
        lambda: effnet.FamilyConfig(_b0(), effnet.Coefficients(*PAPER), phis=()),
        "phis must name at least one phi",
    ),
    "data_facts, a number": (
        lambda: effnet.data_facts(3),
        "data must be digits, synthetic or the path of an image folder, got int",
    ),
    "export_model, a path for the spec": (
        lambda: effnet.export_model("b0.yaml", "b0.onnx"),
        "spec must be a NetworkSpec (effnet.load_spec(path)), got str",
    ),
    "load_spec, a number": (lambda: effnet.load_spec(5), "path must be a path (str or pathlib.Path), got int"),
    "build_model, a path": (
        lambda: effnet.build_model("b0.yaml"),
        "spec must be a NetworkSpec (effnet.load_spec(path)), got str",
    ),
    "count_flops, a name": (
        lambda: effnet.count_flops("b0"),
        "spec must be a NetworkSpec (effnet.load_spec(path)), got str",
    ),
    "search, a dict": (
        lambda: effnet.search({"target_flops": 400_000_000}),
        "config must be a SearchConfig (effnet.SearchConfig(target_flops=...)), got dict",
    ),
    "GridConfig, a path for the base": (
        lambda: effnet.GridConfig("b0.yaml", effnet.GridDefinition.from_ranges()),
        "base must be a NetworkSpec (effnet.load_spec(path)), got str",
    ),
    "TrainConfig, a path for the spec": (
        lambda: effnet.TrainConfig("b0.yaml"),
        "spec must be a NetworkSpec (effnet.load_spec(path)), got str",
    ),
    "load_weights, a torch module": (
        lambda: effnet.load_weights(torch.nn.Linear(2, 2), None),
        "model must be a network effnet.build_model made, got Linear",
    ),
    "save_state_dict, a torch module": (
        lambda: effnet.save_state_dict(torch.nn.Linear(2, 2), "timm", "w.pt"),
        "model must be a network effnet.build_model made, got Linear",
    ),
    "export_model, no out": (
        lambda: effnet.export_model(_b0(), None),
        "out must be a path (str or pathlib.Path), got NoneType",
    ),
    "export_model, a number for the weights": (
        lambda: effnet.export_model(_b0(), "b0.onnx", weights=5),
        "weights must be a path (str or pathlib.Path), got int",
    ),
    "predict, no images": (
        lambda: effnet.predict("model.onnx", None),
        "images must be a path, or paths, folders or glob patterns, got NoneType",
    ),
    "predict, a number among the images": (
        lambda: effnet.predict("model.onnx", [5]),
        "images must be a path (str or pathlib.Path), got int",
    ),
    "predict, no model path": (
        lambda: effnet.predict(None, ["a.png"]),
        "model must be a path (str or pathlib.Path), got NoneType",
    ),
    "eval_transform, no model info": (
        lambda: effnet.eval_transform(None),
        "info must be the ModelInfo that effnet.load_model returns, got NoneType",
    ),
    "train_network, no config": (
        lambda: effnet.train_network(None),
        "config must be a TrainConfig (effnet.TrainConfig(spec, data=...)), got NoneType",
    ),
    "TrainConfig, epochs as text": (lambda: effnet.TrainConfig(_b0(), epochs="x"), "epochs must be a whole number"),
    "TrainConfig, no epochs": (lambda: effnet.TrainConfig(_b0(), epochs=0), "epochs must be at least 1, got 0"),
    "TrainConfig, a negative learning rate": (lambda: effnet.TrainConfig(_b0(), lr=-1.0), "lr must be"),
    "load_model, no checkpoint": (
        lambda: effnet.load_model(None),
        "checkpoint must be a path (str or pathlib.Path), got NoneType",
    ),
    "read_weights, a number": (lambda: effnet.read_weights(5), "path must be a path (str or pathlib.Path), got int"),
    "fold_batch_norm, a path": (
        lambda: effnet.fold_batch_norm("b0.yaml"),
        "model must be a torch module (effnet.build_model(spec)), got str",
    ),
    "compound_scale, no spec": (
        lambda: effnet.compound_scale(None, *PAPER, phi=1),
        "spec must be a NetworkSpec (effnet.load_spec(path)), got NoneType",
    ),
    "dump_spec, no spec": (
        lambda: effnet.dump_spec(None, "b0.yaml"),
        "spec must be a NetworkSpec (effnet.load_spec(path)), got NoneType",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_VALUES))
def test_a_value_of_the_wrong_kind_is_an_input_error_naming_it(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # export_model would write here if it did not refuse
    call, message = WRONG_VALUES[case]
    with pytest.raises(effnet.InputError, match=re.escape(message)):
        call()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "depth, resolution, words",
    [(1e6, 224, "16.0M blocks, over the limit of 10.0K"), (1.0, 100_000, "FLOPs per image, over the limit")],
)
def test_a_spec_made_in_code_over_the_limits_is_refused_before_it_is_built(depth, resolution, words, monkeypatch):
    """A loaded spec is checked as it is read; one `scale` makes in code is checked by `build_model` before a byte
    of its network is allocated (a million-fold depth otherwise asks for 16 million blocks)."""
    from effnet.nas.net import model

    monkeypatch.setattr(model, "Network", lambda spec: pytest.fail("the network was built"))
    huge = effnet.scale(effnet.reference_b0(), depth, 1.1, resolution)
    with pytest.raises(effnet.InputError, match=re.escape(words)):
        effnet.build_model(huge)


def test_predict_takes_one_path_as_one_image_not_its_characters(tmp_path, monkeypatch):
    from effnet.nas import predict

    class Listed(Exception):
        pass

    def listed(items):
        raise Listed(list(items))

    (tmp_path / "model.onnx").write_bytes(b"")  # there, for the images to be listed
    monkeypatch.setattr(predict, "image_files", listed)
    with pytest.raises(Listed) as seen:
        effnet.predict(tmp_path / "model.onnx", str(tmp_path / "photo.jpg"))
    assert seen.value.args[0] == [str(tmp_path / "photo.jpg")]  # not ['/', 't', 'm', 'p', ...]


def test_dir_lists_the_public_api_only():
    names = dir(effnet)
    assert names == sorted(effnet.__all__)
    assert not {"importlib", "annotations", "Any", "_EXPORTS"} & set(names)


def test_count_flops_by_both_methods_agrees_with_fvcore_on_b0(one_torch_thread):
    b0 = effnet.reference_b0()
    analytic, traced = effnet.count_flops(b0), effnet.count_flops(b0, method="fvcore")
    assert analytic.total == traced.total == 399_352_864  # fvcore on a reference EfficientNet-B0
    assert analytic.by_operator == traced.by_operator and analytic.params == traced.params == 5_288_548


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, one_torch_thread):
    code = re.search(r"## Python API.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    found, grid, family = namespace["found"], namespace["grid"], namespace["family"]
    assert 360e6 <= found.best_flops <= 440e6 and (tmp_path / "runs/api-search/b0.yaml").is_file()
    assert grid.coefficients is not None and grid.complete
    assert [m.name for m in family.members] == [f"b{k}" for k in range(1, 8)]
    assert isinstance(namespace["model"], torch.nn.Module)


def process_state() -> dict:
    return {
        "sigint": signal.getsignal(signal.SIGINT),
        "sigterm": signal.getsignal(signal.SIGTERM),
        "optuna_verbosity": optuna.logging.get_verbosity(),
        "threads": torch.get_num_threads(),
        "rng": torch.random.get_rng_state(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def test_a_library_search_leaves_the_process_as_it_found_it(tmp_path):
    before = process_state()
    result = effnet.search(
        effnet.SearchConfig(
            target_flops=1_000_000,
            flops_tolerance=0.3,
            space=TINY_SPACE,
            trials=2,
            proxy=effnet.ProxyConfig(data="synthetic", epochs=1, resolution=16, batch_size=16),
            study=effnet.StudyConfig(run_dir=tmp_path, name="search", threads=1),
        )
    )
    assert result.best_spec is not None
    after = process_state()
    assert before.pop("rng").equal(after.pop("rng"))
    assert after == before
