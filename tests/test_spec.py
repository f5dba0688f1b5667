"""Spec files: exact round-trips, the reference B0 against the paper, and every validation error via the CLI."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from refusals import refusal_stdout_is_right

from effnet.nas.errors import InputError
from effnet.nas.net.spec_file import dump_spec, dump_spec_text, load_spec, spec_from_dict, spec_to_dict
from effnet.scaling.presets import reference_b0

from random_specs import random_spec_dict, random_specs

# Paper Table 1 / the TensorFlow reference's block list: (repeats, kernel, stride, expand, out_channels).
PAPER_B0_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]


# -- the reference B0 ---------------------------------------------------------------------------


def test_reference_b0_is_paper_table_1(b0_yaml):
    spec = load_spec(b0_yaml)
    assert [(s.repeats, s.kernel, s.stride, s.expand, s.out_channels) for s in spec.stages] == PAPER_B0_STAGES
    assert {(s.block, s.se_ratio, s.skip) for s in spec.stages} == {("mbconv", 0.25, True)}
    assert (spec.stem.out_channels, spec.stem.kernel, spec.stem.stride) == (32, 3, 2)
    assert spec.head.out_channels == 1280
    assert (spec.resolution, spec.num_classes, spec.dropout, spec.drop_connect) == (224, 1000, 0.2, 0.2)
    assert (spec.batch_norm.decay, spec.batch_norm.epsilon, spec.activation) == (0.99, 1e-3, "silu")
    assert spec.total_stride == 32
    assert spec.num_blocks == 16


def test_summary_reads_like_paper_table_1(b0_yaml):
    """One token per stage, written out by hand from Table 1 (MBConv1 3x3 to 16, MBConv6 3x3 x2 to 24, ...)."""
    assert load_spec(b0_yaml).summary == (
        "mb1k3x1c16+se mb6k3x2c24+se mb6k5x2c40+se mb6k3x3c80+se mb6k5x3c112+se mb6k5x4c192+se mb6k3x1c320+se"
    )
    spec = spec_from_dict(
        {
            "stages": [
                {
                    "block": "dsconv",
                    "repeats": 2,
                    "kernel": 5,
                    "stride": 1,
                    "expand": 1,
                    "out_channels": 24,
                    "se_ratio": 0,
                    "skip": False,
                },
                {"block": "conv", "repeats": 1, "kernel": 3, "stride": 2, "expand": 1, "out_channels": 40},
            ]
        }
    )
    assert spec.summary == "dsk5x2c24-skip cvk3x1c40+se"


def test_omitted_fields_take_the_reference_defaults():
    spec = spec_from_dict(
        {"stages": [{"block": "mbconv", "repeats": 1, "kernel": 3, "stride": 1, "expand": 1, "out_channels": 16}]}
    )
    # The TensorFlow reference's defaults: BN decay 0.99, epsilon 1e-3, SiLU, drop-connect 0.2, SE 0.25,
    # stem 3x3/2 to 32.
    assert (spec.batch_norm.decay, spec.batch_norm.epsilon, spec.activation) == (0.99, 1e-3, "silu")
    assert (spec.drop_connect, spec.stages[0].se_ratio, spec.stages[0].skip) == (0.2, 0.25, True)
    assert (spec.stem.out_channels, spec.stem.kernel, spec.stem.stride) == (32, 3, 2)


# -- round-trips --------------------------------------------------------------------------------


def test_b0_file_round_trip(b0_yaml, tmp_path):
    spec = load_spec(b0_yaml)
    dump_spec(spec, tmp_path / "b0.yaml")
    again = load_spec(tmp_path / "b0.yaml")
    assert again == spec
    assert dump_spec_text(again) == dump_spec_text(spec)


def test_b0_dict_round_trip(b0_yaml):
    spec = load_spec(b0_yaml)
    assert spec_from_dict(spec_to_dict(spec)) == spec
    raw = yaml.safe_load(b0_yaml.read_text())
    assert spec_to_dict(spec) == raw


@pytest.mark.parametrize("seed", range(4))
def test_random_specs_round_trip(seed, tmp_path):
    for i, spec in enumerate(random_specs(50, seed)):
        assert spec_from_dict(spec_to_dict(spec)) == spec
        path = dump_spec(spec, tmp_path / f"spec{i}.yaml")
        assert load_spec(path) == spec


def test_random_spec_dicts_survive_load_and_dump_unchanged():
    rng = random.Random(7)
    for _ in range(100):
        data = random_spec_dict(rng)
        assert spec_to_dict(spec_from_dict(copy.deepcopy(data))) == data


def test_dump_spec_replaces_an_existing_file_only_when_asked(tmp_path):
    """A spec of the user's under the same name was replaced without a word."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: my own, hand-written\n")
    with pytest.raises(InputError, match=re.escape(f"{mine} exists; give a new file name, or replace=True")):
        dump_spec(reference_b0(), mine)
    assert mine.read_text() == "name: my own, hand-written\n"
    assert load_spec(dump_spec(reference_b0(), mine, replace=True)) == reference_b0()


def test_same_padding_is_written_and_read_back(b0_yaml, tmp_path):
    spec = load_spec(b0_yaml).replace(padding="same")
    text = dump_spec_text(spec)
    assert "padding: same\n" in text
    assert load_spec(dump_spec(spec, tmp_path / "same.yaml")) == spec


def test_default_padding_leaves_the_spec_text_as_it_was(b0_yaml):
    """A spec without `padding` dumps byte for byte as the file it came from: checkpoints and grid digests keep
    matching specs written before the field existed."""
    raw = yaml.safe_load(b0_yaml.read_text())
    spec = spec_from_dict({**raw, "padding": "symmetric"})
    assert spec == load_spec(b0_yaml)
    assert "padding" not in spec_to_dict(spec)
    assert dump_spec_text(spec) == dump_spec_text(load_spec(b0_yaml))


# -- validation errors through `effnet describe` ------------------------------------------------


def b0_data() -> dict[str, Any]:
    return yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "efficientnet-b0.yaml").read_text())


def edit(change: Callable[[dict[str, Any]], Any]) -> str:
    data = b0_data()
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def set_stage(index: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["stages"][index].__setitem__(key, value)


def set_top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.__setitem__(key, value)


def set_in(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d[section].__setitem__(key, value)


# (id, spec text, fragments the one-line message must contain: the field and the problem)
BAD_SPECS = [
    ("unknown-top-key", edit(set_top("resolutoin", 224)), ["spec", "unknown key 'resolutoin'"]),
    ("unknown-stage-key", edit(set_stage(2, "kernal", 5)), ["stages[2]", "unknown key 'kernal'"]),
    ("unknown-stem-key", edit(set_in("stem", "channels", 32)), ["stem", "unknown key 'channels'"]),
    ("unknown-head-key", edit(set_in("head", "pool", "avg")), ["head", "unknown key 'pool'"]),
    ("unknown-bn-key", edit(set_in("batch_norm", "momentum", 0.1)), ["batch_norm", "unknown key 'momentum'"]),
    ("missing-stage-key", edit(lambda d: d["stages"][1].pop("kernel")), ["stages[1]", "'kernel'"]),
    ("missing-stages", edit(lambda d: d.pop("stages")), ["spec", "'stages'"]),
    ("empty-stages", edit(set_top("stages", [])), ["stages", "non-empty list"]),
    ("stages-mapping", edit(set_top("stages", {"a": 1})), ["stages", "list"]),
    ("stage-not-mapping", edit(set_top("stages", [3])), ["stages[0]", "mapping"]),
    ("top-level-list", "- 1\n- 2\n", ["spec", "mapping"]),
    ("empty-file", "", ["spec", "mapping"]),
    ("string-resolution", edit(set_top("resolution", "224")), ["resolution", "integer", "string"]),
    ("float-kernel", edit(set_stage(1, "kernel", 3.0)), ["stages[1].kernel", "integer"]),
    ("bool-repeats", edit(set_stage(0, "repeats", True)), ["stages[0].repeats", "integer", "boolean"]),
    ("bool-in-channels", edit(set_top("in_channels", False)), ["in_channels", "integer", "boolean"]),
    ("bool-out-channels", edit(set_in("head", "out_channels", True)), ["head.out_channels", "boolean"]),
    ("string-se", edit(set_stage(0, "se_ratio", "0.25")), ["stages[0].se_ratio", "number"]),
    ("bool-se", edit(set_stage(0, "se_ratio", True)), ["stages[0].se_ratio", "number", "boolean"]),
    ("int-skip", edit(set_stage(3, "skip", 1)), ["stages[3].skip", "true or false"]),
    ("unknown-block", edit(set_stage(0, "block", "mbconv6")), ["stages[0].block", "mbconv6"]),
    ("unknown-activation", edit(set_top("activation", "gelu")), ["activation", "gelu"]),
    ("unknown-padding", edit(set_top("padding", "valid")), ["spec.padding", "symmetric, same", "valid"]),
    ("null-name", edit(set_top("name", None)), ["name", "string"]),
    ("zero-out-channels", edit(set_stage(4, "out_channels", 0)), ["stages[4].out_channels", "at least 1"]),
    ("negative-stem-channels", edit(set_in("stem", "out_channels", -8)), ["stem.out_channels", "at least 1"]),
    ("zero-head-channels", edit(set_in("head", "out_channels", 0)), ["head.out_channels", "at least 1"]),
    ("zero-repeats", edit(set_stage(5, "repeats", 0)), ["stages[5].repeats", "at least 1"]),
    ("negative-repeats", edit(set_stage(5, "repeats", -2)), ["stages[5].repeats", "at least 1"]),
    ("zero-classes", edit(set_top("num_classes", 0)), ["num_classes", "at least 1"]),
    ("even-kernel", edit(set_stage(2, "kernel", 4)), ["stages[2].kernel", "odd"]),
    ("even-stem-kernel", edit(set_in("stem", "kernel", 2)), ["stem.kernel", "odd"]),
    ("stride-3", edit(set_stage(1, "stride", 3)), ["stages[1].stride", "1 or 2"]),
    ("stride-0", edit(set_stage(1, "stride", 0)), ["stages[1].stride"]),
    ("stem-stride-4", edit(set_in("stem", "stride", 4)), ["stem.stride", "1 or 2"]),
    ("se-one", edit(set_stage(0, "se_ratio", 1.0)), ["stages[0].se_ratio", "[0.0, 1.0)"]),
    ("se-negative", edit(set_stage(0, "se_ratio", -0.1)), ["stages[0].se_ratio", "[0.0, 1.0)"]),
    ("se-big", edit(set_stage(6, "se_ratio", 1.5)), ["stages[6].se_ratio", "[0.0, 1.0)"]),
    ("dropout-one", edit(set_top("dropout", 1.0)), ["dropout", "[0.0, 1.0)"]),
    ("dsconv-expand", edit(lambda d: d["stages"][0].update(block="dsconv", expand=6)), ["stages[0].expand", "dsconv"]),
    ("conv-expand", edit(lambda d: d["stages"][0].update(block="conv", expand=3)), ["stages[0].expand", "conv"]),
    ("mbconv-expand-zero", edit(set_stage(2, "expand", 0)), ["stages[2].expand", "at least 1"]),
    # B0 downsamples 32x (stem 2, four stride-2 stages), so 31 px cannot be reached.
    ("resolution-below-stride", edit(set_top("resolution", 31)), ["resolution", "31", "32"]),
    ("resolution-zero", edit(set_top("resolution", 0)), ["resolution", "at least 1"]),
    ("provenance-list", edit(set_top("provenance", [1, 2])), ["provenance", "mapping"]),
]

# YAML syntax errors and the line PyYAML must report (the line holding the offending character).
SYNTAX_ERRORS = [
    ("two-colons", "name: x\nresolution: 224\nnum_classes: 10\nstem: a: b\n", 4),
    ("tab-indent", "name: x\nresolution: 224\n\tnum_classes: 10\n", 3),
    ("at-sign", "name: x\nresolution: 224\nnum_classes: 10\nin_channels: 3\nactivation: silu\nhead: @x\n", 6),
    ("bad-indent", "name: x\nstem:\n  kernel: 3\n    stride: 2\n", 4),
]


def assert_clean_error(result, path: Path, fragments: list[str]) -> str:
    assert result.exit_code == 2, result.output
    refusal_stdout_is_right(result)
    message = result.stderr.strip()
    assert message.startswith("error: ")
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in result.output
    return message


@pytest.mark.parametrize("text,fragments", [(t, f) for _, t, f in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS])
def test_invalid_spec_is_rejected_cleanly(cli, tmp_path, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_clean_error(cli("describe", path, "--json"), path, fragments)


@pytest.mark.parametrize("text,line", [(t, n) for _, t, n in SYNTAX_ERRORS], ids=[i for i, _, _ in SYNTAX_ERRORS])
def test_yaml_syntax_error_names_the_line(cli, tmp_path, text, line):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    assert_clean_error(cli("describe", path), path, ["YAML syntax error", f"line {line},"])


def test_missing_file(cli, tmp_path):
    path = tmp_path / "absent.yaml"
    assert_clean_error(cli("describe", path), path, ["no such"])


def test_directory_instead_of_file(cli, tmp_path):
    assert_clean_error(cli("describe", tmp_path), tmp_path, ["directory"])


def test_undecodable_file(cli, tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00name: x")
    assert_clean_error(cli("describe", path), path, ["cannot read"])


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "text, words",
    [
        ((CONFIGS / "search_space" / "efficientnet.yaml").read_text(), "a search space, not a network spec"),
        ("command: search\nsettings: {}\nresult: {}\n", "a run record (run.yaml), not a network spec"),
        ("alpha: 1.2\nbeta: 1.1\ngamma: 1.15\nphi: 1\n", "scaling coefficients (coefficients.yaml), not a network"),
    ],
    ids=["search-space", "run-record", "coefficients"],
)
def test_another_effnet_file_given_as_a_spec_is_named_for_what_it_is(cli, tmp_path, text, words):
    """Not 'unknown key' of a spec: the file is effnet's, of another kind, and the line says where it belongs."""
    path = tmp_path / "given.yaml"
    path.write_text(text)
    result = cli("describe", path)
    assert result.exit_code == 2 and words in result.stderr and "unknown key" not in result.stderr
