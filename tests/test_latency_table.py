"""The latency table: every part a space's networks are made of (against enumerating the networks), its fastest
and slowest network (against predicting every one), the cache (a second build times nothing; another machine's
table and a damaged file are measured again, whole), the fix named for a network the table cannot predict,
`effnet latency-table`'s output and refusals, and `effnet describe --latency`'s prediction.

The table of the tiny space at `SIZE` px is built once (a few seconds of timing on two cores). No test compares
timings closer than a factor of two: the machine running them may be busy."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
from pathlib import Path

import pytest
from refusals import refusal_stdout_is_right

from effnet.nas.cpus import usable_cores
from effnet.nas.errors import InputError
from effnet.nas.latency import table as table_module
from effnet.nas.latency.fingerprint import fingerprint_digest
from effnet.nas.latency.parts import network_keys, space_parts
from effnet.nas.latency.reach import latency_reach
from effnet.nas.latency.table import LatencyTable, TableSettings, build_table, find_table
from effnet.nas.net.spec_file import dump_spec, load_spec
from effnet.nas.space.choices import CHOICE_KEYS, SearchSpace
from effnet.nas.space.load import load_space

from random_specs import every_network

DATA = Path(__file__).parent / "data"
TINY_SPACE = str(DATA / "tiny_space.yaml")
SIZE = 16
"""The tiny space's networks at 16 px: a part runs in tens of microseconds."""
SETTINGS = TableSettings(threads=1)


def tiny_at(size: int) -> SearchSpace:
    space = load_space(TINY_SPACE)
    return dataclasses.replace(space, base=space.base.replace(resolution=size))


def cut_space(seed: int) -> SearchSpace:
    """The tiny space at `SIZE` px with one or two of its own options per decision (at most a few thousand
    networks, so every one can be enumerated): every part of it is a part of the tiny space."""
    rng = random.Random(seed)
    space = tiny_at(SIZE)
    stages = []
    for stage in space.stages:
        cut = {
            key: tuple(rng.sample(getattr(stage, key), min(rng.choice([1, 2]), len(getattr(stage, key)))))
            for key in CHOICE_KEYS
        }
        stages.append(dataclasses.replace(stage, **cut))
    return dataclasses.replace(space, name=f"cut-{seed}", stages=tuple(stages))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny space's table at `SIZE` px, one thread, in a cache of its own: (space, build, cache dir)."""
    cache = tmp_path_factory.mktemp("latency-cache")
    space = tiny_at(SIZE)
    return space, build_table(space, SETTINGS, cache), cache


# -- the parts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space_name", [None, TINY_SPACE])
def test_every_part_of_random_networks_is_among_the_space_parts(space_name):
    space = load_space(space_name)
    parts = space_parts(space)
    keys = {part.key for part in parts}
    assert len(keys) == len(parts)  # each part once
    rng = random.Random(11)
    for _ in range(300):
        spec = space.random_spec(rng)
        missing = set(network_keys(spec)) - keys
        assert not missing, f"{spec.name}: {sorted(missing)[:3]}"


@pytest.mark.parametrize("seed", range(4))
def test_the_parts_of_a_space_are_exactly_those_of_its_every_network(seed):
    space = cut_space(seed)
    networks = every_network(space)
    assert 1 < len(networks) <= 20_000
    counted = {key for spec in networks for key in network_keys(spec)}
    listed = [part.key for part in space_parts(space)]
    assert len(listed) == len(counted)
    assert set(listed) == counted


@pytest.mark.parametrize("seed", range(4))
def test_the_fastest_and_slowest_network_are_those_of_predicting_every_network(built, seed):
    table = built[1].table
    space = cut_space(seed)
    predicted = [table.predict(spec) for spec in every_network(space)]
    reach = latency_reach(space, table)
    assert reach.fastest_s == pytest.approx(min(predicted), rel=1e-12)
    assert reach.slowest_s == pytest.approx(max(predicted), rel=1e-12)


def test_a_prediction_is_the_parts_times_as_the_file_holds_them_summed_times_the_factor(built):
    _space, build, _cache = built
    table = build.table
    data = json.loads(Path(table.path).read_text())
    parts = {key: value[0] for key, value in data["parts"].items()}
    # the factor: the median over the file's calibration networks of measured / the sum of their parts
    ratios = sorted(measured / sum(parts[key] for key in keys) for _space_id, measured, keys in data["calibration"])
    middle = len(ratios) // 2
    factor = ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2
    assert len(ratios) == 12 and table.factor == pytest.approx(factor, rel=1e-12)
    spec = cut_space(0).random_spec(random.Random(2))
    by_hand = factor * sum(parts[key] for key in network_keys(spec))
    assert table.predict(spec) == pytest.approx(by_hand, rel=1e-12)
    assert table.runtime == "folded" and table.batch == 1 and table.threads == 1


# -- the cache -------------------------------------------------------------------------------------------


def test_a_second_build_measures_nothing_and_reads_the_same_times(built):
    space, first, cache = built
    assert first.measured == len(space_parts(space)) and first.reused == 0 and first.calibrated
    again = build_table(space, SETTINGS, cache)
    assert (again.measured, again.reused, again.calibrated, again.replaced) == (0, first.measured, False, None)
    assert dict(again.table.parts) == dict(first.table.parts)
    assert again.table.factor == first.table.factor
    found = LatencyTable.find(threads=1, cache_dir=cache)
    assert found is not None and dict(found.parts) == dict(first.table.parts)
    assert find_table(TableSettings(threads=1, batch=2), cache) is None  # another batch: no table yet


def copy_table(table: LatencyTable, cache: Path, change=None) -> Path:
    """The table's file in another cache, its content changed by `change(data)` (then named by its new
    fingerprint, as a table built under it would be)."""
    data = json.loads(Path(table.path).read_text())
    name = Path(table.path).name
    if change is not None:
        change(data)
        name = name.rsplit("-", 1)[0] + f"-{fingerprint_digest(data['fingerprint'])}.json"
    target = cache / "latency" / name
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(data))
    return target


def test_another_machines_table_is_not_used_and_the_build_says_why_once(built, tmp_path):
    space, first, _cache = built

    def elsewhere(data):
        data["fingerprint"]["cpu"] = "Another CPU"
        data["parts"] = {key: [1.0, 0.0] for key in data["parts"]}  # a second a part: nothing here is that slow

    foreign = copy_table(first.table, tmp_path, elsewhere)
    kept = foreign.read_text()
    assert find_table(SETTINGS, tmp_path) is None
    build = build_table(space, SETTINGS, tmp_path)
    assert build.replaced is not None
    assert foreign.name in build.replaced and "cpu: Another CPU -> " in build.replaced
    assert build.measured == len(space_parts(space)) and build.reused == 0 and build.calibrated
    assert build.table.path != foreign and foreign.read_text() == kept  # left as it was
    assert max(part.median_s for part in build.table.parts.values()) < 1.0  # timed here, not read from it
    again = build_table(space, SETTINGS, tmp_path)
    assert again.replaced is None and again.measured == 0


def cut_short(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def one_part_wrong(path: Path) -> None:
    data = json.loads(path.read_text())
    data["parts"][next(iter(data["parts"]))] = "fast"
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage", [cut_short, one_part_wrong])
def test_a_damaged_file_is_measured_again_whole_never_half_used(built, tmp_path, damage):
    space, first, _cache = built
    path = copy_table(first.table, tmp_path)
    damage(path)
    assert find_table(SETTINGS, tmp_path) is None
    build = build_table(space, SETTINGS, tmp_path)
    assert build.replaced is not None and "damaged" in build.replaced and str(path) in build.replaced
    assert build.measured == len(space_parts(space)) and build.reused == 0 and build.calibrated
    found = find_table(SETTINGS, tmp_path)
    assert found is not None and set(found.parts) == set(first.table.parts)


def test_a_network_whose_parts_the_table_lacks_is_refused_naming_the_fix(built):
    table = built[1].table
    spec = tiny_at(32).random_spec(random.Random(0))  # at 32 px: parts of another size
    assert table.missing(spec)
    with pytest.raises(InputError, match=r"not in the latency table .*effnet latency-table --space"):
        table.predict(spec)
    with pytest.raises(InputError, match=r"effnet latency-table --space mnasnet"):
        latency_reach(load_space("mnasnet"), table)


# -- effnet latency-table --------------------------------------------------------------------------------


def test_latency_table_json_and_a_second_run_measures_nothing(cli, tmp_path):
    args = ["latency-table", "--space", TINY_SPACE, "--resolution", "8", "--threads", "1"]
    args += ["--cache-dir", str(tmp_path), "--json"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    parts = len(space_parts(tiny_at(8)))
    assert (data["parts"], data["measured"], data["reused"], data["calibrated_now"]) == (parts, parts, 0, True)
    assert (data["runtime"], data["device"], data["batch"], data["threads"]) == ("folded", "cpu", 1, 1)
    assert 0 < data["fastest_s"] <= data["slowest_s"] and data["factor"] > 0
    assert Path(data["path"]).is_file() and Path(data["path"]).parent == tmp_path / "latency"
    again = json.loads(cli(*args).stdout)
    assert (again["measured"], again["reused"], again["calibrated_now"]) == (0, parts, False)
    assert (again["path"], again["factor"]) == (data["path"], data["factor"])
    assert again["replaced"] is None


def onnxruntime_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))


@pytest.mark.parametrize(
    "args, words",
    [
        (["--runtime", "tensorrt"], "error: --runtime must be one of folded, torch, onnxruntime"),
        (["--threads", str(usable_cores() + 1)], f"error: --threads {usable_cores() + 1} is more than the"),
        (["--resolution", "0"], "error: --resolution must be at least 1"),
        (["--batch", "0"], "error: --batch must be at least 1"),
        (["--resolution", "100000"], "error: --resolution must be at most 4,096, got 100000"),
        (["--classes", "1000000000"], "error: --classes must be at most 10,000,000"),  # not as spec.num_classes
        (["--runtime", "onnxruntime"], "error: the onnxruntime runtime needs onnxruntime, not installed; pip install"),
    ],
)
def test_latency_table_bad_inputs_are_one_line_and_exit_2(cli, tmp_path, monkeypatch, args, words):
    onnxruntime_missing(monkeypatch)
    result = cli("latency-table", "--space", TINY_SPACE, "--cache-dir", str(tmp_path), *args, "--json")
    assert result.exit_code == 2
    assert result.stderr.startswith(words) and result.stderr.count("\n") == 1, result.stderr
    refusal_stdout_is_right(result)
    assert list(tmp_path.iterdir()) == []  # nothing timed, nothing written


def test_latency_table_refuses_what_the_free_memory_cannot_hold(cli, tmp_path, monkeypatch):
    """The tiny space at 32 px needs megabytes to time (a chunk of parts' inputs, twelve calibration networks'
    weights): more than the 64 KiB left free here. Refused before the cache is touched."""
    monkeypatch.setattr(table_module, "available_memory", lambda: 2**16)
    result = cli("latency-table", "--space", TINY_SPACE, "--cache-dir", str(tmp_path), "--threads", "1", "--json")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: timing the tiny space's parts at batch 1 needs about ")
    assert result.stderr.endswith("GiB is free on this machine; use a smaller batch or resolution\n")
    refusal_stdout_is_right(result)
    assert list(tmp_path.iterdir()) == []


# -- effnet describe --latency -----------------------------------------------------------------------------


def describe_latency(cli, spec_path, cache, *extra):
    args = ["describe", str(spec_path), "--latency", "--threads", "1", "--cache-dir", str(cache), *extra]
    return cli(*args)


def test_describe_shows_the_tables_prediction_beside_the_measurement(cli, built, tmp_path):
    space, build, cache = built
    spec = cut_space(1).random_spec(random.Random(4))
    path = dump_spec(spec, tmp_path / "net.yaml")
    result = describe_latency(cli, path, cache, "--repeats", "30", "--json")
    assert result.exit_code == 0, result.output
    latency = json.loads(result.stdout)["latency"]
    assert latency["predicted_s"] == pytest.approx(build.table.predict(load_spec(path)), rel=1e-12)
    # Same unit and the same network's order of magnitude (a ms/s slip is 1,000x); not the table's accuracy,
    # which bench/bench_latency.py measures: the table was timed earlier, and a CI runner's load between the
    # two can double either (0.41 seen in one CI run)
    assert 0.1 < latency["predicted_s"] / latency["measured_s"] < 10.0
    assert "lacks" not in result.stderr
    shown = describe_latency(cli, path, cache, "--repeats", "3")
    assert shown.exit_code == 0, shown.output
    assert "predicted" in shown.stdout and "Latency measured here" in shown.stdout


@pytest.mark.parametrize("space, named", [(None, "SPACE"), ("mnasnet", "mnasnet"), ("tiny", "SPACE")])
def test_describe_says_once_how_to_build_a_table_that_lacks_the_networks_parts(cli, built, tmp_path, space, named):
    """The space a search recorded is named where `--space` takes its name (a shipped one), else a placeholder."""
    spec = load_spec(DATA / "tiny_base.yaml")  # 32 px: parts the table at 16 px lacks
    spec = spec.replace(provenance={"space": space} if space else {})
    path = dump_spec(spec, tmp_path / "net.yaml")
    result = describe_latency(cli, path, built[2], "--repeats", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["latency"]["predicted_s"] is None
    lines = [line for line in result.stderr.splitlines() if "lacks" in line]
    assert len(lines) == 1 and len([w for w in data["warnings"] if "lacks" in w]) == 1
    assert lines[0].startswith("warning: the latency table ")
    command = f"effnet latency-table --space {named} --resolution 32 --classes 4 --runtime folded --batch 1 --threads 1"
    assert lines[0].endswith(command)


def test_describe_without_a_table_predicts_nothing_and_warns_of_nothing(cli, tmp_path):
    result = describe_latency(cli, DATA / "tiny_base.yaml", tmp_path, "--repeats", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["latency"]["predicted_s"] is None
    assert not any("lacks" in warning for warning in data["warnings"])
    assert list(tmp_path.iterdir()) == []  # looking a table up writes nothing


def test_describe_cache_dir_is_a_setting_of_the_latency_measurement(cli, tmp_path):
    result = cli("describe", str(DATA / "tiny_base.yaml"), "--cache-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == "error: --cache-dir is a setting of the latency measurement; add --latency\n"


def test_a_second_space_adds_its_calibration_networks_and_the_factor_is_fitted_over_all(tmp_path):
    first = build_table(tiny_at(SIZE), SETTINGS, tmp_path)
    other = tiny_at(SIZE + 8)  # another space: new parts, new calibration networks
    second = build_table(other, SETTINGS, tmp_path)
    assert second.calibrated and second.measured > 0
    assert second.table.calibration_networks == 2 * first.table.calibration_networks == 24
    ratios = sorted(
        sample.measured_s / sum(second.table.parts[key].median_s for key in sample.keys)
        for sample in second.table.samples
    )
    assert second.table.factor == pytest.approx((ratios[11] + ratios[12]) / 2, rel=1e-12)
    again = build_table(other, SETTINGS, tmp_path)  # nothing new: nothing timed, the factor as it was
    assert (again.measured, again.calibrated, again.table.factor) == (0, False, second.table.factor)
