"""Your own data end to end: `effnet train` on a tiny folder of 3 classes with images of odd sizes, `export-model` to
ONNX and TorchScript with the run's record as metadata, and `effnet predict` from the checkpoint and from both files,
checked against the torch model that `effnet.load_model` gives, on images prepared by `effnet.eval_transform`;
`--weights` picking the raw, EMA or best tensors; the README's snippet; bad inputs one line and exit 2."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import onnx
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

import effnet
from effnet.nas.data.images import decode_image
from effnet.nas.data.loader import Normalize
from effnet.nas.data.transforms import eval_transform as training_eval_transform
from effnet.nas.errors import InputError
from effnet.nas.inputs import parse_yaml
from effnet.nas.net.model import build_model
from effnet.nas.net.spec_file import spec_from_dict

from images import jpeg_folder
from test_train import TINY_SPEC

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ["class0", "class1", "class2"]
"""The class folders jpeg_folder writes, in sorted (index) order."""
REFERENCE_VIEW = {
    "resize": 18,
    "crop": 16,
    "interpolation": "bicubic",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
"""At 16 px: short side to round(16 / 0.875) = 18, the centre 16 x 16, bicubic, ImageNet's mean and std."""
README = Path(__file__).resolve().parents[1] / "README.md"


def jit_load(path: Path, extra: dict[str, str] | None = None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        return torch.jit.load(str(path), _extra_files=extra if extra is not None else {})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One epoch on 3 classes (6 training, 3 validation images each, 17-40 px on a side) at 16 px, then the run
    directory exported to ONNX and TorchScript with the default weights."""
    from typer.testing import CliRunner

    from effnet.cli.app import app

    runner = CliRunner()
    root = tmp_path_factory.mktemp("deploy")
    (root / "tiny.yaml").write_text(TINY_SPEC)
    data = jpeg_folder(root / "data", classes=3, per_class=6, val_per_class=3, sizes=(17, 41))
    run = root / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(root / "tiny.yaml"),
            "--data",
            str(data),
            "--resolution",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "3",
            "--lr",
            "0.05",
            "--augment",
            "light",
            "--loader-workers",
            "0",
            "--device",
            "cpu",
            "--run-dir",
            str(run),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    files = {}
    for format in ("onnx", "torchscript"):
        files[format] = root / f"tiny.{format}"
        exported = runner.invoke(
            app,
            [
                "export-model",
                str(root / "tiny.yaml"),
                "--checkpoint",
                str(run),
                "--format",
                format,
                "--out",
                str(files[format]),
                "--json",
            ],
        )
        assert exported.exit_code == 0, exported.output
    return {
        "root": root,
        "spec": root / "tiny.yaml",
        "run": run,
        "val": data / "val",
        "train": json.loads(result.stdout),
        **files,
    }


def checkpoint_model(path: Path, weights: str) -> torch.nn.Module:
    """The raw or EMA network of a checkpoint, read here with torch.load as the trainer wrote it."""
    state = torch.load(path, weights_only=True)
    model = build_model(spec_from_dict(parse_yaml(state["spec"], "checkpoint"))).eval()
    model.load_state_dict(state["model"] if weights == "raw" else state["ema"]["weights"])
    return model


def relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_checkpoints_and_run_record_hold_classes_resolution_transform_and_best_weights(trained):
    run = trained["run"]
    last = torch.load(run / "checkpoint.pt", weights_only=True)
    best = torch.load(run / "best.pt", weights_only=True)
    record = parse_yaml((run / "run.yaml").read_text(), "run.yaml")["result"]
    for holder in (last, best, record):
        assert holder["classes"] == CLASSES and holder["transform"] == REFERENCE_VIEW and holder["resolution"] == 16
    assert last["best"]["weights"] == best["best"]["weights"] == record["best_weights"] in ("raw", "ema")
    assert "optimizer" in last and "optimizer" not in best and best["epoch"] == best["best"]["epoch"] == 1
    assert record["best_checkpoint"] == str(run / "best.pt")


def test_export_writes_the_record_as_onnx_metadata_and_torchscript_extra_files(trained):
    best_weights = trained["train"]["best_weights"]
    onnx_meta = {p.key: p.value for p in onnx.load(str(trained["onnx"])).metadata_props}
    extra = dict.fromkeys(onnx_meta, "")
    jit_load(trained["torchscript"], extra)
    script_meta = {key: value.decode() if isinstance(value, bytes) else value for key, value in extra.items()}
    for meta in (onnx_meta, script_meta):
        assert json.loads(meta["effnet.classes"]) == CLASSES
        assert json.loads(meta["effnet.transform"]) == REFERENCE_VIEW
        assert (meta["effnet.resolution"], meta["effnet.spec"], meta["effnet.weights"]) == ("16", "tiny", best_weights)


def test_eval_transform_is_the_view_training_evaluated_on(trained):
    """The public transform of the recorded view against the uint8 view and on-device normalisation that training's
    evaluation runs, and against torchvision's steps written out here from the reference's numbers."""
    _, info = effnet.load_model(trained["run"])
    by_hand = v2.Compose(
        [
            v2.Resize(18, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(16),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    for path in sorted(trained["val"].rglob("*.jpg")):
        image = Image.open(path).convert("RGB")
        assert min(image.size) != 18 and image.size[0] != image.size[1]  # resized and cropped, not already square
        mine = effnet.eval_transform(info)(image)
        training = Normalize(torch.device("cpu"))(training_eval_transform(16, "files")(image)[None])[0]
        assert mine.shape == (3, 16, 16)
        torch.testing.assert_close(mine, training, atol=1e-5, rtol=0)
        torch.testing.assert_close(mine, by_hand(image), atol=0, rtol=0)


def test_load_model_gives_the_best_weights_in_eval_mode_with_its_own_head(trained):
    run = trained["run"]
    best = torch.load(run / "best.pt", weights_only=True)
    expected = best["model"] if best["best"]["weights"] == "raw" else best["ema"]["weights"]
    model, info = effnet.load_model(run)
    assert not model.training and model.classifier.out_features == 3
    assert all(torch.equal(model.state_dict()[key], tensor) for key, tensor in expected.items())
    assert (info.classes, info.resolution, info.weights) == (tuple(CLASSES), 16, best["best"]["weights"])
    for weights, key in (("raw", "model"), ("ema", "ema")):
        other, other_info = effnet.load_model(run / "checkpoint.pt", weights)
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        tensors = state[key] if key == "model" else state[key]["weights"]
        assert other_info.weights == weights
        assert all(torch.equal(other.state_dict()[name], tensor) for name, tensor in tensors.items())


@pytest.mark.parametrize("source", ["run", "onnx", "torchscript"])
def test_predict_labels_are_the_torch_models_argmax_on_the_prepared_images(trained, cli, source):
    result = cli("predict", trained[source], trained["val"], "--top-k", "3", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == {"run": "checkpoint"}.get(source, source) and data["classes"] == CLASSES
    model, info = effnet.load_model(trained["run"])
    prepare = effnet.eval_transform(info)
    files = sorted(trained["val"].rglob("*.jpg"))
    assert [p["image"] for p in data["predictions"]] == [str(f) for f in files]
    for path, prediction in zip(files, data["predictions"], strict=True):
        with torch.no_grad():
            probabilities = torch.softmax(model(prepare(Image.open(path).convert("RGB"))[None]), dim=1)[0]
        top = prediction["top"]
        assert top[0]["class"] == CLASSES[int(probabilities.argmax())]
        assert [t["class"] for t in top] == [CLASSES[i] for i in probabilities.argsort(descending=True).tolist()]
        assert [t["probability"] for t in top] == pytest.approx(sorted(probabilities.tolist(), reverse=True), abs=1e-4)


@pytest.mark.parametrize("weights", ["raw", "ema", "best"])
def test_export_weights_picks_the_raw_ema_or_best_tensors(trained, cli, tmp_path, weights):
    checkpoint = trained["run"] / "checkpoint.pt"
    models = {kind: checkpoint_model(checkpoint, kind) for kind in ("raw", "ema")}
    picked = torch.load(checkpoint, weights_only=True)["best"]["weights"] if weights == "best" else weights
    other = "ema" if picked == "raw" else "raw"
    out = tmp_path / "tiny.pt"
    result = cli(
        "export-model",
        trained["spec"],
        "--checkpoint",
        checkpoint,
        "--weights",
        weights,
        "--format",
        "torchscript",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metadata"]["effnet.weights"] == picked
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got, expected, unexpected = jit_load(out)(x), models[picked](x), models[other](x)
    assert relative_diff(unexpected, expected) > 1e-2  # the two sets of weights compute visibly different logits
    assert relative_diff(got, expected) < 1e-4


def test_the_readmes_snippet_runs(trained, tmp_path, monkeypatch, capsys):
    snippet = re.search(r"## Use the trained network.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "runs").mkdir()
    shutil.copytree(trained["run"], tmp_path / "runs" / "train-tiny")
    shutil.copyfile(trained["onnx"], tmp_path / "tiny.onnx")
    # a phone's photo: stored sideways (40 x 24) with EXIF orientation 6, upright 24 x 40
    stored = Image.open(sorted(trained["val"].rglob("*.jpg"))[0]).convert("RGB").resize((40, 24))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "photo.jpg"
    stored.save(photo, exif=exif)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(snippet, "README.md", "exec"), names)
    lines = capsys.readouterr().out.splitlines()
    model, info = effnet.load_model(trained["run"])
    upright = effnet.eval_transform(info)(decode_image(photo))[None]  # as effnet.predict reads the file
    assert torch.equal(names["x"], upright) and torch.equal(names["prepare"](names["image"])[None], upright)
    with torch.no_grad():
        expected = CLASSES[int(model(upright).argmax())]
    assert lines[0] == lines[2] == expected and lines[1].startswith(f"(('{expected}', ")


def test_images_are_named_as_files_folders_and_globs_each_taken_once(trained, tmp_path):
    from effnet.nas.predict import image_files

    folder = shutil.copytree(trained["val"], tmp_path / "val")
    (folder / "class1" / "notes.txt").write_text("not an image")
    (folder / "class1" / ".hidden.jpg").write_bytes(b"")
    shutil.copytree(folder / "class2", folder / ".ipynb_checkpoints")  # a hidden folder's copies: left out
    jpgs = sorted(p for p in folder.rglob("[0-9].jpg") if ".ipynb_checkpoints" not in p.parts)
    assert len(jpgs) == 9  # 3 classes x 3 validation images
    assert image_files([folder]) == jpgs
    assert image_files([f"{folder}/**/[0-9].jpg", jpgs[4], folder / "class2"]) == jpgs
    assert image_files([folder / "class1" / "notes.txt"]) == [folder / "class1" / "notes.txt"]  # named: decoded
    # a file named with brackets that was moved: the pattern reading of [1] gets the way to name it literally
    with pytest.raises(InputError, match=re.escape("write [[] for a [ in a name")):
        image_files([folder / "cat[1].jpg"])
    (folder / "class1" / "cat[1].jpg").write_bytes((folder / "class1" / "0.jpg").read_bytes())
    assert image_files([f"{folder}/class1/cat[[]1].jpg"]) == [folder / "class1" / "cat[1].jpg"]


def test_predict_reports_progress_as_the_one_progress_event(trained):
    from effnet.nas.predict import predict
    from effnet.nas.progress import Progress

    events: list[Progress] = []
    images = sorted(Path(trained["val"]).rglob("[0-9].jpg"))
    result = predict(trained["run"], images, on_progress=events.append)
    assert len(result.predictions) == len(images) == 9
    assert all(isinstance(event, Progress) and event.total == 9 for event in events)
    assert [event.done for event in events] == sorted(event.done for event in events) and events[-1].done == 9


# -- bad inputs -------------------------------------------------------------------------------------


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_file_that_is_no_image_is_named_and_left_out(trained, cli, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    photo = sorted(trained["val"].rglob("*.jpg"))[0]
    result = cli("predict", trained["run"], photo, text, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["image"] for p in data["predictions"]] == [str(photo)]
    assert len(data["skipped"]) == 1 and str(text) in data["skipped"][0] and str(text) in result.stderr
    assert "notes.jpg: cannot read the image" in one_error_line(cli("predict", trained["run"], text))


def test_exported_files_without_effnet_metadata_are_refused_naming_what_to_give(trained, cli, tmp_path):
    bare_onnx = onnx.load(str(trained["onnx"]))
    del bare_onnx.metadata_props[:]
    onnx.save(bare_onnx, str(tmp_path / "bare.onnx"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        traced = torch.jit.trace(checkpoint_model(trained["run"] / "best.pt", "raw"), torch.zeros(1, 3, 16, 16))
        torch.jit.save(traced, str(tmp_path / "bare.pt"))
    photo = sorted(trained["val"].rglob("*.jpg"))[0]
    for model in ("bare.onnx", "bare.pt"):
        line = one_error_line(cli("predict", tmp_path / model, photo))
        assert "no effnet metadata" in line and "effnet export-model --checkpoint" in line
        assert "or the checkpoint itself" in line


def test_a_missing_model_is_named_before_missing_images(cli, tmp_path):
    line = one_error_line(cli("predict", tmp_path / "gone.pt", tmp_path / "gone.jpg"))
    assert line.startswith(f"error: {tmp_path / 'gone.pt'}: no such checkpoint or model file")


def test_a_checkpoint_without_class_names_is_refused(trained, cli, tmp_path):
    state = torch.load(trained["run"] / "best.pt", weights_only=True)
    del state["classes"]
    torch.save(state, tmp_path / "old.pt")
    photo = sorted(trained["val"].rglob("*.jpg"))[0]
    assert "without class names or input transform" in one_error_line(cli("predict", tmp_path / "old.pt", photo))


def test_ema_or_raw_of_a_file_with_one_set_of_weights_is_refused_with_its_flag(trained, cli, tmp_path):
    model, _ = effnet.load_model(trained["run"])
    effnet.save_state_dict(model, "effnet", tmp_path / "plain.pth")
    line = one_error_line(
        cli(
            "export-model",
            trained["spec"],
            "--checkpoint",
            tmp_path / "plain.pth",
            "--weights",
            "ema",
            "--out",
            tmp_path / "x.onnx",
        )
    )
    assert line.startswith("error: --weights ema picks an effnet training checkpoint's weights")
    photo = sorted(trained["val"].rglob("*.jpg"))[0]
    for exported in ("onnx", "torchscript"):
        line = one_error_line(cli("predict", trained[exported], photo, "--weights", "raw"))
        assert line.startswith("error: --weights raw picks a training checkpoint's weights") and "exported" in line


def test_the_table_shows_paths_as_written_never_as_markup(trained, cli, tmp_path):
    folder = tmp_path / "shots[" / "q]"  # as markup, ".../shots[/q]/..." closes a tag never opened: rich raises
    folder.mkdir(parents=True)
    photo = folder / "[draft]a.jpg"
    photo.write_bytes(sorted(trained["val"].rglob("*.jpg"))[0].read_bytes())
    (folder / "[draft]broken.jpg").write_text("not an image")
    result = cli("predict", trained["run"], folder)
    assert result.exit_code == 0, result.output
    assert "[draft]a.jpg" in result.stdout.replace("\n", "")  # the table's image cell (folded at any width)
    assert str(folder / "[draft]broken.jpg") in " ".join(result.stderr.split())
