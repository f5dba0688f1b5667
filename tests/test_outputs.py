"""What effnet writes, and what it refuses to: nothing of the user's is replaced (--out and run directories),
a run directory has one command at a time, user text is shown as written, and a stop or a failed write leaves
no temporary file behind."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from effnet.nas import files
from effnet.nas.data import cache
from effnet.nas.data.cache import cached_images
from effnet.nas.data.folder import index_folder
from effnet.nas.errors import InputError
from effnet.nas.outputs import LOCK_NAME, MANIFEST_NAME, claim_run_dir, release_run_dir

from images import jpeg_folder
from postgres import TINY_SEARCH

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_base.yaml"
FAMILY = ["export-family", "--base", TINY, "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15", "--phi", "1"]
GRID = [
    "grid-scale",
    "--base",
    TINY,
    "--proxy",
    "zero-cost",
    "--data",
    "synthetic",
    "--proxy-resolution",
    "16",
    "--alpha-range",
    "1.2",
    "--beta-range",
    "1.1",
    "--gamma-range",
    "1.15",
    "--tolerance",
    "0.1",
]


def one_error_line(result) -> str:
    """The single `error:` line of a refused command (exit 2, nothing on stdout)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert result.stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry of `folder`: its mode and its bytes (or a link's target)."""
    found = {}
    for path in sorted(folder.iterdir()):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[path.name] = (info.st_mode, os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            found[path.name] = (info.st_mode, path.read_bytes())
        else:
            found[path.name] = (info.st_mode, "")
    return found


# -- export-model --out -------------------------------------------------------------------------------


def _device(tmp_path: Path) -> tuple[Path, str]:
    return Path("/dev/null"), "not a regular file"


def _fifo(tmp_path: Path) -> tuple[Path, str]:
    os.mkfifo(tmp_path / "pipe.pt")
    return tmp_path / "pipe.pt", "not a regular file"


def _directory(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "model.pt").mkdir()
    return tmp_path / "model.pt", "is a directory"


def _symlink(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "elsewhere.pt").write_bytes(b"the user's file")
    (tmp_path / "model.pt").symlink_to(tmp_path / "elsewhere.pt")
    return tmp_path / "model.pt", "symbolic link"


def _read_only(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "model.pt").write_bytes(b"kept as it is")
    (tmp_path / "model.pt").chmod(0o444)
    return tmp_path / "model.pt", "read-only"


def _the_spec(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "spec.yaml", "also this command's input"


@pytest.mark.parametrize(
    "target",
    [_device, _fifo, _directory, _symlink, _read_only, _the_spec],
    ids=["char-device", "fifo", "directory", "symlink", "read-only", "the-input-spec"],
)
def test_export_model_refuses_an_out_it_may_not_replace_before_writing_anything(target, tmp_path, cli):
    (tmp_path / "spec.yaml").write_bytes(TINY.read_bytes())
    out, problem = target(tmp_path)
    before, device = snapshot(tmp_path), os.stat(out).st_rdev if out == Path("/dev/null") else None
    line = one_error_line(cli("export-model", tmp_path / "spec.yaml", "--format", "timm", "--out", out))
    assert problem in line and str(out) in line
    assert snapshot(tmp_path) == before  # no file replaced, none added (no temporary file either)
    if device is not None:
        assert stat.S_ISCHR(os.stat(out).st_mode) and os.stat(out).st_rdev == device


def test_export_model_refuses_to_replace_the_checkpoint_it_reads(tmp_path, cli):
    weights = tmp_path / "weights.pt"
    assert cli("export-model", TINY, "--format", "timm", "--out", weights).exit_code == 0
    before = weights.read_bytes()
    line = one_error_line(
        cli("export-model", TINY, "--checkpoint", weights, "--format", "torchvision", "--out", weights)
    )
    assert "also this command's input" in line and weights.read_bytes() == before
    line = one_error_line(  # not even when told to replace what is there
        cli("export-model", TINY, "--checkpoint", weights, "--format", "torchvision", "--out", weights, "--force")
    )
    assert "also this command's input" in line and weights.read_bytes() == before


def test_export_model_replaces_an_existing_file_only_when_told_to(tmp_path, cli):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the user's file")
    line = one_error_line(cli("export-model", TINY, "--format", "timm", "--out", out))
    assert f"{out} exists" in line and "--force" in line
    assert out.read_bytes() == b"the user's file"
    assert cli("export-model", TINY, "--format", "timm", "--out", out, "--force").exit_code == 0
    assert "conv_stem.weight" in torch.load(out, weights_only=True)  # timm's state dict replaced it


def test_export_model_never_replaces_a_training_runs_files(tmp_path, cli):
    """A training run directory's checkpoints and manifest are the run's: refused even with --force, the
    checkpoint the command reads (the directory names its best.pt) as its input; a new file beside them is fine,
    and with --force an export of before there is replaced."""
    from effnet.nas.training.trainer import TRAIN_FILES

    run = tmp_path / "run"
    release_run_dir(claim_run_dir(run, "train", writes=TRAIN_FILES))
    for name in ("best.pt", "checkpoint.pt"):
        (run / name).write_bytes(f"the run's {name}".encode())
    before = snapshot(run)
    export = ("export-model", TINY, "--format", "timm", "--force", "--out")
    line = one_error_line(cli(*export, run / "best.pt", "--checkpoint", run))
    assert "also this command's input" in line and "best.pt" in line
    for name in ("checkpoint.pt", MANIFEST_NAME, "best.pt", "metrics.csv", "run.yaml"):
        (run / name).write_bytes((run / name).read_bytes() if (run / name).exists() else b"the run's")
        before = snapshot(run)
        line = one_error_line(cli(*export, run / name))
        assert f"belongs to the effnet run directory {run}" in line
        assert snapshot(run) == before
    assert cli(*export, run / "model.pt").exit_code == 0
    assert cli(*export, run / "model.pt").exit_code == 0  # its own export of before: --force replaces it


# -- run directories ----------------------------------------------------------------------------------


def test_a_run_directory_with_files_effnet_did_not_write_is_refused_and_force_never_replaces_them(tmp_path, cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    (run / ".write-test").write_text("also mine")
    before = snapshot(run)
    line = one_error_line(cli(*FAMILY, "--run-dir", run))
    assert "holds files effnet did not write (.write-test, notes.txt)" in line and "--force" in line
    assert snapshot(run) == before

    assert cli(*FAMILY, "--run-dir", run, "--force").exit_code == 0
    after = snapshot(run)
    assert {name: after[name] for name in before} == before  # written beside them, none touched
    assert {"b1.yaml", "family.csv", "run.yaml", MANIFEST_NAME, LOCK_NAME} <= set(after)
    manifest = yaml.safe_load((run / MANIFEST_NAME).read_text())
    assert {k: manifest[k] for k in ("command", "foreign")} == {
        "command": "export-family",
        "foreign": [".write-test", "notes.txt"],
    }
    assert {"b1.yaml", "family.csv", "run.yaml"} <= set(manifest["writes"])
    assert cli(*FAMILY, "--run-dir", run).exit_code == 0  # its own directory now: a rerun needs no --force


def test_force_still_refuses_to_replace_a_users_file_named_like_effnets(tmp_path, cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "family.csv").write_text("the user's table")
    line = one_error_line(cli(*FAMILY, "--run-dir", run, "--force"))
    assert "family.csv" in line and "never replaces" in line
    assert (run / "family.csv").read_text() == "the user's table"


@pytest.mark.parametrize(
    "command, name",
    [
        (["search", *TINY_SEARCH], "trials.csv"),
        (["search", *TINY_SEARCH], "supernet-0123456789ab.pt"),
        (GRID, "coefficients.yaml"),
        (GRID, "run.yaml"),
        (["train", TINY, "--data", "synthetic", "--epochs", "1"], "metrics.csv"),
        (FAMILY, "family.csv"),
        (FAMILY, "b1.yaml"),
    ],
    ids=["search", "search-supernet", "grid", "grid-run-record", "train", "family", "family-member"],
)
def test_force_refuses_a_users_file_named_like_an_output_before_any_work(command, name, tmp_path, cli, no_training):
    """A file of the user's under a name the command writes is refused when the directory is claimed, not at the
    end of the study; `no_training` fails the test if a worker starts, and nothing is left in the directory."""
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text("the user's file")
    (run / "notes.txt").write_text("mine")
    before = snapshot(run)
    line = one_error_line(cli(*command, "--run-dir", run, "--force"))
    assert f"holds {name}, which effnet did not write" in line and "move it away" in line
    assert snapshot(run) == before


def test_the_root_and_the_home_directory_are_refused_as_run_directories(tmp_path, cli, monkeypatch):
    assert "is the root directory" in one_error_line(cli(*FAMILY, "--run-dir", "/"))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert "is the home directory" in one_error_line(cli(*FAMILY, "--run-dir", home))
    assert list(home.iterdir()) == []


def test_another_commands_run_directory_is_refused_with_the_fix(tmp_path, cli, no_training):
    family = tmp_path / "family"
    assert cli(*FAMILY, "--run-dir", family).exit_code == 0
    before = snapshot(family)
    line = one_error_line(cli(*GRID, "--run-dir", family))
    assert "holds the files of effnet export-family" in line and "--run-dir runs/grid" in line
    assert snapshot(family) == before


def test_a_search_run_directory_from_before_manifests_is_known_by_its_run_record(tmp_path, cli, no_training):
    """A search's directory written before effnet kept a manifest: its run.yaml says whose it is."""
    search = tmp_path / "search"
    search.mkdir()
    (search / "run.yaml").write_text("command: search\nsettings: {}\n")
    (search / "report.html").write_text("<html>the search's report</html>")
    before = snapshot(search)
    line = one_error_line(cli(*GRID, "--run-dir", search))
    assert "holds the files of effnet search" in line and "--run-dir runs/grid" in line
    assert snapshot(search) == before


def test_a_second_study_in_a_run_directory_is_refused_not_written_over(tmp_path, cli, instant_study):
    """Another study's b0.yaml, trials.csv and run.yaml would replace the first's in the same directory."""
    grid = tmp_path / "grid"
    assert cli(*GRID, "--run-dir", grid).exit_code == 0
    before = snapshot(grid)
    line = one_error_line(cli(*GRID, "--run-dir", grid, "--study", "other"))
    assert "holds the outputs of study 'grid'" in line and "--run-dir runs/other" in line and "--study grid" in line
    assert snapshot(grid) == before
    assert cli(*GRID, "--run-dir", grid).exit_code == 0  # the same study resumes


def test_a_directory_a_refused_run_claimed_holds_no_outputs_and_may_go_to_another_study(tmp_path, cli, instant_study):
    """A run refused after the claim (its settings differ from its study's, say) wrote nothing but the manifest:
    following the refusal's advice, another study name, must not be refused in turn."""
    from effnet.nas.study.runner import STUDY_FILES
    from effnet.scaling.grid import GRID_FILES

    grid = tmp_path / "grid"
    release_run_dir(claim_run_dir(grid, "grid-scale", study="first", writes=(*STUDY_FILES, *GRID_FILES)))
    assert sorted(p.name for p in grid.iterdir()) == sorted([MANIFEST_NAME, LOCK_NAME])
    assert cli(*GRID, "--run-dir", grid, "--study", "other").exit_code == 0
    assert yaml.safe_load((grid / MANIFEST_NAME).read_text())["study"] == "other"


def test_a_run_directory_whose_manifest_names_no_study_is_known_by_its_run_record(tmp_path, cli, no_training):
    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / MANIFEST_NAME).write_text("command: grid-scale\nforeign: []\n")
    (grid / "run.yaml").write_text("command: grid-scale\nresult: {study: first}\n")
    before = snapshot(grid)
    line = one_error_line(cli(*GRID, "--run-dir", grid))
    assert "holds the outputs of study 'first'" in line
    assert snapshot(grid) == before


HOLD = """
import sys, time
from effnet.nas.outputs import claim_run_dir
claim_run_dir(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_second_command_into_a_run_directory_in_use_is_refused_naming_the_holder(tmp_path, cli):
    run = tmp_path / "run"
    with subprocess.Popen([sys.executable, "-c", HOLD, str(run), "train"], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            line = one_error_line(cli("train", TINY, "--data", "synthetic", "--epochs", "1", "--run-dir", run))
            assert f"in use by another effnet command (PID {holder.pid})" in line
            assert "in use" in one_error_line(cli(*FAMILY, "--run-dir", run))
            assert sorted(p.name for p in run.iterdir()) == [MANIFEST_NAME, LOCK_NAME]
        finally:
            holder.kill()


# -- user text is data, not markup ------------------------------------------------------------------

MARKUP = "[/x][bold]"
CLASS = "[bold]c0"
"""A folder name cannot hold a slash: a class folder's markup opens a style."""


@pytest.fixture
def marked(tmp_path):
    """A spec named, a run directory and an image folder (a class and a broken file in it) holding markup."""
    spec = yaml.safe_load(TINY.read_text())
    spec["name"] = f"tiny{MARKUP}"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    images = jpeg_folder(tmp_path / f"images{MARKUP}", classes=2, per_class=6)
    (images / "class0").rename(images / CLASS)
    (images / CLASS / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    return tmp_path / "spec.yaml", images, tmp_path / f"run{MARKUP}"


@pytest.mark.parametrize("command", ["describe", "export-model", "export-family", "train", "search", "grid-scale"])
def test_markup_in_names_and_paths_is_shown_as_written(command, marked, cli, instant_study):
    spec, images, run = marked
    args = {
        "describe": ["describe", spec],
        "export-model": ["export-model", spec, "--format", "timm", "--out", run / "model.pt"],
        "export-family": [*FAMILY[:2], spec, *FAMILY[3:], "--run-dir", run],
        "train": [
            "train",
            spec,
            "--data",
            images,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--precise-bn",
            "0",
            "--augment",
            "none",
            "--loader-workers",
            "0",
            "--run-dir",
            run,
        ],
        "search": [
            "search",
            *TINY_SEARCH[: TINY_SEARCH.index("--data")],
            "--data",
            images,
            *TINY_SEARCH[TINY_SEARCH.index("--data") + 2 :],
            "--loader-workers",
            "0",
            "--run-dir",
            run,
        ],
        "grid-scale": [*GRID[:2], spec, *GRID[3:], "--run-dir", run],
    }[command]
    result = cli(*args)
    assert result.exit_code == 0, result.output or repr(result.exception)
    shown = " ".join(result.output.split())  # rich may wrap a long line
    expected = {
        "describe": f"tiny{MARKUP}",
        "export-model": f"tiny{MARKUP}",
        "export-family": f"run{MARKUP}",
        "train": f"images{MARKUP}",
        "search": f"run{MARKUP}",
        "grid-scale": f"run{MARKUP}",
    }[command]
    assert expected in shown
    if command in ("train", "search"):  # the broken file in the class folder, named in the warning
        assert f"{CLASS}/broken.jpg" in shown


def test_a_zero_cost_search_calls_its_number_a_score_not_an_accuracy(tmp_path, cli):
    result = cli("search", *TINY_SEARCH, "--proxy", "zero-cost", "--trials", "3", "--run-dir", tmp_path)
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "proxy score" in shown  # the b0 line
    header = next(line for line in result.stdout.splitlines() if "reward" in line and "params" in line)
    assert "score" in header and "accuracy" not in header  # nor the table's column
    assert "scored 3 completed" in shown and "(not scored)" in shown  # nor "trained": nothing is


def test_a_zero_cost_search_on_identical_images_warns_that_its_scores_rank_nothing(tmp_path, cli):
    """Every image the same: NASWOT's kernel is singular for every network, each scores the floor, and the report's
    importances of scores apart by rounding only must not end the run (it did, exit 1, with no b0.yaml)."""
    data = tmp_path / "same"
    for c in range(2):
        (data / f"class{c}").mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (40, 40), (90, 90, 90)).save(data / f"class{c}" / f"{i}.png")
    result = cli(
        "search", *TINY_SEARCH, "--data", data, "--proxy", "zero-cost", "--trials", "4", "--run-dir", tmp_path / "r"
    )
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "score is the floor of a degenerate network" in shown and "--proxy train" in shown
    assert (tmp_path / "r" / "b0.yaml").is_file()
    assert "score is the floor of a degenerate network" in (tmp_path / "r" / "report.html").read_text()


# -- temporary files, stops and failed writes ---------------------------------------------------------

SLOW_WRITE = """
import sys, time
from effnet.nas import export, files
real = files.atomic_write
def slowly(path, write):
    def writing(fh):
        write(fh)
        fh.flush()
        print("writing", flush=True)
        time.sleep(120)
    return real(path, writing)
export.atomic_write = slowly
from effnet.cli.app import main
sys.argv = ["effnet", *sys.argv[1:]]
main()
"""


def temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


def stopped_once_it_says(
    script: str, args: list[str], said: str, signum: int, meanwhile: Callable[[], None] = lambda: None
) -> subprocess.CompletedProcess:
    """Run effnet with `args` under `script` (which slows a step that prints `said`), send `signum` once it says
    so (after `meanwhile`, which checks the files at that moment), and return the ended process's output."""
    with subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout.readline().strip() == said
            meanwhile()
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize(
    "signum, spec, size",
    [(signal.SIGTERM, "b0", 20 * 10**6), (signal.SIGINT, "tiny", 1)],
    ids=["SIGTERM-b0", "SIGINT-tiny"],
)
@pytest.mark.slow
def test_a_stop_during_export_models_write_leaves_no_temporary_file(signum, spec, size, tmp_path, b0_yaml):
    """B0's 21 MB timm state dict (5.3M float32 parameters) is being written, its temporary file holds it and
    the command waits inside the write: a stop signal ends the command with "interrupted", 128 + the signal,
    and no file; under `--json`, stdout still gets its one object, the error."""
    out = tmp_path / "out" / "model.pt"
    spec_path = b0_yaml if spec == "b0" else TINY

    def half_written() -> None:
        [tmp] = temporary_files(out.parent)
        assert (out.parent / tmp).stat().st_size >= size

    json_flag = ["--json"] if signum == signal.SIGINT else []
    args = ["export-model", str(spec_path), "--format", "timm", "--out", str(out), *json_flag]
    ended = stopped_once_it_says(SLOW_WRITE, args, "writing", signum, half_written)
    assert ended.returncode == 128 + signum, ended.stderr
    assert "interrupted" in ended.stderr and "Traceback" not in ended.stderr
    assert list(out.parent.iterdir()) == []
    if signum == signal.SIGINT:
        assert json.loads(ended.stdout) == {"error": "interrupted", "exit_code": 130}


SLOW_CACHE = """
import sys, time
from effnet.nas.data import cache
real = cache.cached_images
def slowly(images, size, cache_dir, decode):
    def decoding(images, size):
        for batch in decode(images, size):
            yield batch
            print("decoding", flush=True)
            time.sleep(0.5)
    return real(images, size, cache_dir, decoding)
cache.cached_images = slowly
from effnet.nas.data import sources
sources.cached_images = slowly
from effnet.cli.app import main
sys.argv = ["effnet", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_sigterm_while_a_proxy_cache_is_built_leaves_no_temporary_file(tmp_path):
    """A search on a folder of 240 small images builds its decoded cache; SIGTERM while the cache's temporary file
    is written: exit 143, "interrupted", no cache and no temporary file."""
    images = jpeg_folder(tmp_path / "images", classes=4, per_class=60, sizes=(16, 24))
    caches = tmp_path / "cache"
    args = [
        "search",
        *TINY_SEARCH[: TINY_SEARCH.index("--data")],
        "--data",
        str(images),
        *TINY_SEARCH[TINY_SEARCH.index("--data") + 2 :],
        "--loader-workers",
        "0",
        "--cache-dir",
        str(caches),
        "--run-dir",
        str(tmp_path / "run"),
    ]

    def one_cache_in_writing() -> None:
        assert len(temporary_files(caches)) == 1

    ended = stopped_once_it_says(SLOW_CACHE, args, "decoding", signal.SIGTERM, one_cache_in_writing)
    assert ended.returncode == 143, ended.stderr
    assert "interrupted" in ended.stderr and "Traceback" not in ended.stderr
    assert temporary_files(caches) == [] and list(caches.rglob("*.npy")) == []


SLOW_REPORT = """
import sys, time
from effnet.nas.search import run_dir
real = run_dir.write_search_report
def slowly(*args, **kwargs):
    print("writing", flush=True)
    time.sleep(3)
    return real(*args, **kwargs)
run_dir.write_search_report = slowly
from effnet.cli.app import main
sys.argv = ["effnet", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_a_stop_while_a_finished_search_writes_its_files_lets_them_be_written(tmp_path):
    """Every trial done, the run writing its report: Ctrl-C then used to end it with only trials.csv and the
    plots, no b0.yaml, report.html or run.yaml, though nothing was left to compute. Now the files are written,
    and the exit still says interrupted (130)."""
    run = tmp_path / "run"
    args = ["search", *TINY_SEARCH, "--trials", "2", "--run-dir", str(run)]
    ended = stopped_once_it_says(SLOW_REPORT, args, "writing", signal.SIGINT)
    assert ended.returncode == 130, ended.stderr
    assert "interrupted" in ended.stderr and "Traceback" not in ended.stderr
    assert {"b0.yaml", "report.html", "run.yaml", "trials.csv"} <= {p.name for p in run.iterdir()}
    assert yaml.safe_load((run / "run.yaml").read_text())["result"]["best_spec"] == str(run / "b0.yaml")


def test_a_full_disk_during_a_write_is_one_line_naming_the_file(tmp_path, cli, monkeypatch):
    """ENOSPC while family.png is written (the last report file): exit 2, the file and the problem named, the
    file's temporary copy gone."""
    real = files.tempfile.mkstemp

    def full_for_the_plot(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".family.png."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", full_for_the_plot)
    run = tmp_path / "run"
    line = one_error_line(cli(*FAMILY, "--run-dir", run))
    assert f"cannot write {run / 'family.png'}: No space left on device; free some space" in line
    assert temporary_files(run) == [] and not (run / "family.png").exists()


def test_atomic_write_cut_short_by_enospc_or_a_read_only_directory_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("the previous report")

    for code, fix in ((errno.ENOSPC, "free some space"), (errno.EROFS, "make the directory writable")):

        def failing(fh, code=code):
            fh.write(b"half a report")
            raise OSError(code, os.strerror(code))

        with pytest.raises(InputError, match=f"cannot write {target}: {os.strerror(code)}; {fix}"):
            files.atomic_write(target, failing)
        assert target.read_text() == "the previous report" and sorted(p.name for p in tmp_path.iterdir()) == [
            "report.html"
        ]


def test_a_cache_the_disk_cannot_hold_is_refused_before_a_byte_is_written(tmp_path, monkeypatch):
    """100 images at 64 px need 100 * 3 * 64 * 64 bytes (1.2 MB) plus the 64 MiB reserve; 10 MiB free is refused."""
    images, _ = index_folder(jpeg_folder(tmp_path / "data", classes=2, per_class=50, sizes=(16, 20)))
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 10 * 2**20})())

    def never(images, size):
        raise AssertionError("decoding started")
        yield

    with pytest.raises(InputError, match="needs 1 MiB, 10 MiB is free under .*--cache-dir"):
        cached_images(images, 64, tmp_path / "cache", never)
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"] == []


def test_a_cache_write_failing_with_enospc_is_one_error_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    images, _ = index_folder(jpeg_folder(tmp_path / "data", classes=2, per_class=4))
    calls = []

    def failing_write(handle, data, path):
        calls.append(len(data))
        if len(calls) == 2:  # the header went through; the first batch meets a full disk
            raise files.write_failure(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        handle.write(data)

    monkeypatch.setattr(cache, "_write", failing_write)

    def decode(images, size):
        yield np.zeros((8, 3, size, size), np.uint8), np.zeros(8, np.int64), []

    with pytest.raises(InputError, match="No space left on device; free some space"):
        cached_images(images, 8, tmp_path / "cache", decode)
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"] == []


def test_the_npy_header_rewritten_for_fewer_images_keeps_the_data_in_place(tmp_path):
    """numpy itself reads the cut header: 1000 images written, 7 kept."""
    first = cache._npy_header((1000, 3, 4, 4))
    cut = cache._npy_header((7, 3, 4, 4), len(first))
    assert len(cut) == len(first) and len(cut) % 64 == 0
    path = tmp_path / "a.npy"
    data = np.arange(7 * 48, dtype=np.uint8).reshape(7, 3, 4, 4)
    path.write_bytes(cut + data.tobytes())
    assert np.array_equal(np.load(path), data)


def test_the_writability_probe_leaves_nothing_and_touches_no_users_file(tmp_path):
    (tmp_path / ".write-test").write_text("the user's")
    files.ensure_writable_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".write-test"]
    assert (tmp_path / ".write-test").read_text() == "the user's"


@pytest.mark.slow
def test_the_lock_file_names_the_holder_while_it_runs(tmp_path):
    run = tmp_path / "run"
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run), "search"], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            assert (run / LOCK_NAME).read_text().strip() == str(holder.pid)
            with pytest.raises(InputError, match=f"PID {holder.pid}"):
                claim_run_dir(run, "search")
        finally:
            holder.kill()
    release_run_dir(claim_run_dir(run, "search"))  # the lock went with the process: free for the same command


def test_a_crash_log_never_replaces_a_users_file_of_that_name(tmp_path):
    (tmp_path / "error.log").write_text("the user's log")
    log = files.write_error_log(tmp_path / "error.log", "Traceback: a bug")
    try:
        assert log.parent != tmp_path and log.read_text() == "Traceback: a bug"
        assert (tmp_path / "error.log").read_text() == "the user's log"
    finally:
        log.unlink()
    assert files.write_error_log(tmp_path / "worker-0-error.log", "a worker's bug") == tmp_path / "worker-0-error.log"


def test_a_directory_where_run_yaml_goes_is_one_line_not_an_unexpected_error(tmp_path, cli):
    run = tmp_path / "run"
    assert cli(*FAMILY, "--run-dir", run).exit_code == 0
    (run / "run.yaml").unlink()
    (run / "run.yaml").mkdir()
    line = one_error_line(cli(*FAMILY, "--run-dir", run))
    assert f"{run / 'run.yaml'} is a directory" in line and (run / "run.yaml").is_dir()
