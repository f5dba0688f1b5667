"""Bad input: the corpus in tests/bad_inputs/ (each case one clear line and exit code 2, never a traceback),
and property tests that random YAML never crashes the spec or space loader with anything but InputError."""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.errors import InputError
from effnet.nas.inputs import MAX_INPUT_BYTES
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import load_spec, spec_from_dict, spec_to_dict
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.load import load_space
from effnet.nas.study.storage import redact_url

from postgres import TINY_SEARCH, TINY_SPACE, files_holding

CORPUS = Path(__file__).parent / "bad_inputs"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
PREFIX = {
    "describe": ["describe"],
    "search": ["search", *TINY_SEARCH, "--run-dir", "@TMP/run", "--json"],
    "grid-scale": [
        "grid-scale",
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
        "--run-dir",
        "@TMP/run",
        "--json",
    ],
    "export-family": ["export-family", "--phi", "1", "--run-dir", "@TMP/run", "--json"],
    "proxy-check": [
        "proxy-check",
        "--space",
        TINY_SPACE,
        "--target-flops",
        "1M",
        "--flops-tolerance",
        "0.3",
        "--data",
        "synthetic",
        "--candidates",
        "3",
        "--proxy-epochs",
        "1",
        "--reference-epochs",
        "1",
        "--proxy-resolution",
        "16",
        "--threads",
        "1",
        "--run-dir",
        "@TMP/run",
        "--json",
    ],
    "export-model": ["export-model", "--out", "@TMP/model.onnx", "--json"],
    "predict": ["predict", "--json"],
    "train": [
        "train",
        "@DIR/../data/tiny_base.yaml",
        "--data",
        "synthetic",
        "--resolution",
        "16",
        "--epochs",
        "1",
        "--run-dir",
        "@TMP/run",
        "--json",
    ],
}
"""Each command with quick settings; a case's own arguments come after and override them."""
CASE_SECONDS = 10
runner = CliRunner()


def expand(arg: str, tmp_path: Path) -> str:
    """A case's argument with its placeholders made real (see cases.yaml)."""
    if arg == "@EMPTY":
        (tmp_path / "empty").mkdir(exist_ok=True)
        return str(tmp_path / "empty")
    if "@FIFO" in arg:
        fifo = tmp_path / "input.yaml"
        if not fifo.exists():
            os.mkfifo(fifo)
        return arg.replace("@FIFO", str(fifo))
    if arg == "@BIG":
        big = tmp_path / "big.yaml"
        big.write_bytes(b"#" * (MAX_INPUT_BYTES + 1))
        return str(big)
    return arg.replace("@DIR", str(CORPUS)).replace("@TMP", str(tmp_path))


def run_case(case: dict[str, Any], tmp_path: Path) -> Any:
    for source, target in case.get("copy", []):
        (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / source, tmp_path / target)
    return runner.invoke(app, [expand(str(a), tmp_path) for a in [*PREFIX[case["run"]], *case["args"]]])


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_a_bad_input_gives_one_clear_line_and_exit_code_2(case, tmp_path, request, one_torch_thread):
    """Every case of the corpus, within 10 s (a hostile file must not cost minutes of CPU)."""
    request.getfixturevalue("instant_study" if case.get("exit") == 0 else "no_training")
    started = time.perf_counter()
    result = run_case(case, tmp_path)
    assert time.perf_counter() - started < CASE_SECONDS
    assert "Traceback" not in result.output
    if case.get("exit") == 0:
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.output or result.exception!r}"
        assert case.get("stdout", "") in result.stdout and case.get("stderr", "") in result.stderr
        assert [f for f in case.get("files", []) if not (tmp_path / "run" / f).is_file()] == []
        return
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output or result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert case["error"] in lines[0]
    if "--json" in [*PREFIX[case["run"]], *case["args"]]:  # a script reading stdout gets an object here too
        assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: "), "exit_code": 2}
    else:
        assert result.stdout == ""
    for secret in case.get("hidden", []):
        assert secret not in result.output
    assert not [f for secret in case.get("hidden", []) for f in files_holding(secret, tmp_path)]


@dataclass(frozen=True)
class Measured:
    exit_code: int
    seconds: float
    peak_bytes: int
    """The command process's peak resident memory (its own; these cases start no worker)."""
    stderr: str


def measure(case: dict[str, Any], tmp_path: Path) -> Measured:
    """A case run as its own `effnet` process: exit code, wall time and peak memory from the kernel."""
    for source, target in case.get("copy", []):
        (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / source, tmp_path / target)
    args = [expand(str(a), tmp_path) for a in [*PREFIX[case["run"]], *case["args"]]]
    err = tmp_path / "stderr.txt"
    started = time.perf_counter()
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "effnet.cli", *args], stdout=subprocess.DEVNULL, stderr=stderr
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(process.returncode, time.perf_counter() - started, usage.ru_maxrss * 1024, err.read_text())


HOSTILE = (
    "spec-fifo",
    "space-dev-zero",
    "spec-over-the-byte-cap",
    "spec-billion-laughs",
    "space-billion-laughs",
    "coefficients-billion-laughs",
    "spec-repeats-in-millions",
    "spec-resolution-100000-fvcore",
    "spec-params-over-limit",
    "spec-activations-over-limit",
    "family-member-too-deep",
    "family-match-gamma-barely-above-one",
    "target-above-the-space",
    "coefficients-huge-integer",
)
"""The cases that asked for minutes of CPU or tens of GB before they were refused (bench/bench_bad_inputs.py
measures every case the same way)."""


@pytest.mark.slow
@pytest.mark.parametrize("case_id", HOSTILE)
def test_a_hostile_input_is_refused_within_10_s_and_2_gb(case_id, tmp_path):
    case = next(c for c in CASES if c["id"] == case_id)
    measured = measure(case, tmp_path)
    assert measured.exit_code == 2 and case["error"] in measured.stderr, measured.stderr
    assert measured.seconds < CASE_SECONDS and measured.peak_bytes < 2 * 2**30


def test_the_corpus_is_complete():
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)), "two cases share an id"
    paths = {Path(m) for case in CASES for a in case["args"] for m in re.findall(r"@DIR/(\S+)", str(a))}
    paths |= {Path(source) for case in CASES for source, _ in case.get("copy", [])}
    missing = [
        case["id"]
        for case in CASES
        for a in case["args"]
        for m in re.findall(r"@DIR/(\S+)", str(a))
        if not (CORPUS / m).exists() and "no such" not in case["error"]
    ]
    assert missing == [], "these cases name a file that is not there: they would test 'no such file' instead"
    files = {p.relative_to(CORPUS) for p in CORPUS.rglob("*") if p.is_file() and p.name != "cases.yaml"}
    unused = [f for f in files if not any(f == p or p in f.parents for p in paths)]
    assert unused == [], "a corpus file no case uses"
    assert {case["run"] for case in CASES} == set(PREFIX)


@pytest.mark.parametrize(
    "text, redacted",
    [
        ("postgresql://effnet:pw@db:5432/x", "postgresql://effnet:***@db:5432/x"),
        ("postgresql+psycopg2://effnet:p%40ss:w/rd@db/x", "postgresql+psycopg2://effnet:***@db/x"),
        ("mysql://:pw@db/x?charset=utf8", "mysql://:***@db/x?charset=utf8"),
        ("effnet:pw@db.example/x", "effnet:***@db.example/x"),
        ("cannot reach 'postgresql://u:pw@h/x': refused", "cannot reach 'postgresql://u:***@h/x': refused"),
        ("postgresql://effnet@db/x", "postgresql://effnet@db/x"),
        ("sqlite:///runs/a:b@c.db", "sqlite:///runs/a:b@c.db"),
        ("journal:/runs/study.journal", "journal:/runs/study.journal"),
    ],
)
def test_redact_url_hides_the_password_and_nothing_else(text, redacted):
    assert redact_url(text) == redacted


# -- random YAML ------------------------------------------------------------------------------------

SPEC_WORDS = [
    "name",
    "resolution",
    "num_classes",
    "in_channels",
    "activation",
    "dropout",
    "drop_connect",
    "batch_norm",
    "stem",
    "stages",
    "head",
    "provenance",
    "block",
    "repeats",
    "kernel",
    "stride",
    "expand",
    "out_channels",
    "se_ratio",
    "skip",
    "decay",
    "epsilon",
    "mbconv",
    "dsconv",
    "conv",
    "silu",
]
SPACE_WORDS = ["base", "choices", "skeleton", "description", "width", "repeats_offset"]
NASTY = [10**400, -(10**400), 2**63, float("nan"), float("inf"), -0.0, 1e-320, "", "1e3", True, None, [], {}]
"""Values at the edges of what a loader converts: too big for a float, not a number, empty, the wrong type."""
NASTY_IDS = [
    "1e400",
    "-1e400",
    "2**63",
    "nan",
    "inf",
    "-0.0",
    "1e-320",
    "empty",
    "1e3-string",
    "true",
    "null",
    "[]",
    "{}",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-300, 300),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(SPEC_WORDS + SPACE_WORDS),
    st.sampled_from(NASTY),
)
keys = st.one_of(st.sampled_from(SPEC_WORDS + SPACE_WORDS), st.text(max_size=8), st.integers(-3, 3))
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=30
)
LOADER_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("random-yaml") / "input.yaml"


def load_spec_or_input_error(path: Path, text: str | bytes) -> NetworkSpec | None:
    """The spec loader on a file holding `text`: a valid spec or InputError, nothing else."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        spec = load_spec(path)
    except InputError:
        return None
    assert spec_from_dict(spec_to_dict(spec)) == spec, "an accepted spec must survive its own round trip"
    return spec


def load_space_or_input_error(path: Path, text: str) -> SearchSpace | None:
    path.write_text(text)
    try:
        space = load_space(path)
    except InputError:
        return None
    spec = space.random_spec(random.Random(0))
    assert spec_from_dict(spec_to_dict(spec)) == spec, "an accepted space must sample valid specs"
    return space


@LOADER_SETTINGS
@given(document=documents)
def test_random_yaml_documents_never_crash_the_spec_loader(document, scratch):
    load_spec_or_input_error(scratch, yaml.safe_dump(document))


@LOADER_SETTINGS
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_random_text_never_crashes_the_spec_loader(text, scratch):
    load_spec_or_input_error(scratch, text)


def positions(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a parsed YAML document."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found.append((node, key))
        found.extend(positions(value))
    return found


def mutate(document: Any, data: st.DataObject) -> None:
    """Replace, nudge, retype, delete or add one entry somewhere in the document."""
    places = positions(document)
    if not places:
        document[data.draw(keys)] = data.draw(documents)
        return
    leaves = [(c, k) for c, k in places if not isinstance(c[k], (dict, list))]
    action = data.draw(st.sampled_from(["leaf", "leaf", "leaf", "replace", "nudge", "retype", "delete", "add"]))
    pool = leaves if action == "leaf" and leaves else places
    container, key = pool[data.draw(st.integers(0, len(pool) - 1), label="position")]
    value = container[key]
    if action == "leaf":
        container[key] = data.draw(st.one_of(st.sampled_from(NASTY), scalars))
    elif action == "replace":
        container[key] = data.draw(documents)
    elif action == "nudge" and type(value) in (int, float) and abs(value) < 1e300:
        container[key] = value + data.draw(st.sampled_from([-1, 1, -value, 0.5, 1e9]))
    elif action == "retype":
        container[key] = data.draw(st.sampled_from([[value], {"value": value}, str(value), None]))
    elif action == "delete":
        del container[key]
    elif isinstance(container, dict):
        container[data.draw(keys)] = data.draw(documents)
    else:
        container.insert(key, copy.deepcopy(value) if data.draw(st.booleans()) else data.draw(documents))


REFERENCE_B0 = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "efficientnet-b0.yaml").read_text())
TINY = yaml.safe_load(Path(TINY_SPACE).read_text())


@pytest.mark.parametrize(
    "original, load",
    [(REFERENCE_B0, load_spec_or_input_error), (TINY, load_space_or_input_error)],
    ids=["b0-spec", "space"],
)
@LOADER_SETTINGS
@given(data=st.data())
def test_mutations_of_valid_files_never_crash_their_loader(original, load, data, scratch):
    """One to four random edits of the reference B0 or a search space: a valid file or InputError."""
    document = copy.deepcopy(original)
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(document, data)
    load(scratch, yaml.safe_dump(document))


@LOADER_SETTINGS
@given(document=documents)
def test_random_yaml_documents_never_crash_the_space_loader(document, scratch):
    load_space_or_input_error(scratch, yaml.safe_dump(document))


def leaf_paths(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in leaf_paths(value, (*path, key))]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in leaf_paths(value, (*path, i))]
    return [path]


def with_value(document: Any, path: tuple, value: Any) -> Any:
    changed = copy.deepcopy(document)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


@pytest.mark.parametrize("nasty", NASTY, ids=NASTY_IDS)
def test_each_edge_value_in_each_field_of_the_reference_b0(nasty, scratch):
    for path in leaf_paths(REFERENCE_B0):
        load_spec_or_input_error(scratch, yaml.safe_dump(with_value(REFERENCE_B0, path, nasty)))


@pytest.mark.parametrize("nasty", NASTY, ids=NASTY_IDS)
def test_each_edge_value_in_each_field_of_a_search_space(nasty, scratch):
    for path in leaf_paths(TINY):
        load_space_or_input_error(scratch, yaml.safe_dump(with_value(TINY, path, nasty)))


def test_the_mutation_tests_start_from_valid_documents(tmp_path):
    assert load_spec_or_input_error(tmp_path / "b0.yaml", yaml.safe_dump(REFERENCE_B0)) is not None
    assert load_space_or_input_error(tmp_path / "tiny.yaml", yaml.safe_dump(TINY)) is not None
