"""Reading users' files within limits: regular files only, a byte cap, no alias bombs, YAML 1.1's floats."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest
import yaml

from effnet.nas.errors import InputError
from effnet.nas.files import yaml_text
from effnet.nas.inputs import MAX_INPUT_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, load_yaml, parse_yaml, read_text
from effnet.nas.net.spec_file import dump_spec, load_spec, spec_from_dict, spec_to_dict
from effnet.scaling.presets import reference_b0


def laughs(levels: int, width: int = 10) -> str:
    """The "billion laughs": each level an anchor holding `width` aliases of the level below."""
    lines = ['a0: &a0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(InputError, load_spec, fifo).value))
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # let the blocked read end, or the test run would hang on it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
        pytest.fail("reading a FIFO blocked")
    assert "is a FIFO, not a regular file" in str(outcome[0])


@pytest.mark.parametrize("device, kind", [("/dev/zero", "a character device"), ("/dev/null", "a character device")])
def test_a_device_is_refused_without_reading_it(device, kind):
    started = time.perf_counter()
    with pytest.raises(InputError, match=f"is {kind}, not a regular file"):
        read_text(device, "spec file")
    assert time.perf_counter() - started < 1


def test_a_file_over_the_byte_cap_is_refused_naming_the_cap(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_INPUT_BYTES + b"\n")
    with pytest.raises(InputError, match="larger than 2 MiB, the limit for a YAML input"):
        read_text(path, "spec file")
    path.write_bytes(b"# " + b"x" * (MAX_INPUT_BYTES - 3) + b"\n")  # exactly the cap: read
    assert len(read_text(path, "spec file")) == MAX_INPUT_BYTES


def test_a_billion_laughs_is_refused_before_anything_expands_it():
    text = laughs(9)  # 10^9 strings in 600-odd bytes
    assert len(text) < 1000
    started = time.perf_counter()
    with pytest.raises(InputError, match=f"expand it to more than {MAX_YAML_NODES:,} values"):
        parse_yaml(text, "bomb.yaml")
    assert time.perf_counter() - started < 1


def test_aliases_that_stay_under_the_limit_are_read():
    data = parse_yaml(laughs(3), "small.yaml")  # 10^3 strings: a few shared lists
    assert len(data["a3"]) == 10 and data["a3"][0][0] == ["lol"] * 10


def nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


def test_nesting_is_read_to_the_limit_and_refused_one_level_past_it():
    deepest = parse_yaml(nested(MAX_YAML_DEPTH), "deep.yaml")
    for _ in range(MAX_YAML_DEPTH - 1):
        deepest = deepest[0]
    assert deepest == [1]
    with pytest.raises(InputError, match=f"deep.yaml: YAML refused: nested more than {MAX_YAML_DEPTH} levels"):
        parse_yaml(nested(MAX_YAML_DEPTH + 1), "deep.yaml")


def test_nesting_deep_enough_to_overflow_the_composers_stack_is_refused_not_a_crash():
    """50,000 levels in 100 KB: libyaml's composer recursed once per level in C and the process died of a
    segmentation fault (exit 139, no message). Run apart, so that a crash is this test's failure only."""
    code = (
        "from effnet.nas.inputs import parse_yaml\n"
        "from effnet.nas.errors import InputError\n"
        "try:\n"
        "    parse_yaml('x: ' + '[' * 50_000 + ']' * 50_000, 'deep.yaml')\n"
        "except InputError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-500:])
    assert result.stdout.strip() == f"deep.yaml: YAML refused: nested more than {MAX_YAML_DEPTH} levels deep " + (
        "(the limit); flatten the document"
    )


def test_nesting_reached_through_an_alias_counts_at_its_full_depth():
    """An anchor first met shallow (`c`) and nested again under another 90 levels (`b`) is 180 deep."""
    half = MAX_YAML_DEPTH * 9 // 10
    text = f"a: &a {nested(half)}\nc: *a\nb: {nested(half, '*a')}\n"
    with pytest.raises(InputError, match="nested more than"):
        parse_yaml(text, "aliases.yaml")
    assert parse_yaml(f"a: &a {nested(half)}\nb: [*a]\n", "aliases.yaml")["b"][0] == parse_yaml(nested(half), "x")


def test_a_recursive_alias_is_refused():
    with pytest.raises(InputError, match="refers to a node that contains it"):
        parse_yaml("a: &x\n  b: *x\n", "loop.yaml")


@pytest.mark.parametrize("written, value", [("1e-3", 0.001), ("1E3", 1000.0), ("-2.5e+2", -250.0), ("1.0e-3", 0.001)])
def test_a_number_with_an_exponent_and_no_dot_is_a_number(written, value):
    """YAML 1.1 reads 1e-3 as a string; a user writing epsilon: 1e-3 means the number."""
    assert parse_yaml(f"epsilon: {written}\n", "x.yaml") == {"epsilon": value}


def test_a_spec_with_epsilon_1e_3_loads(tmp_path):
    path = tmp_path / "b0.yaml"
    path.write_text(yaml_text(spec_to_dict(reference_b0())).replace("epsilon: 0.001", "epsilon: 1e-3"))
    assert "epsilon: 1e-3" in path.read_text()
    assert load_spec(path).batch_norm.epsilon == 0.001


def test_a_string_that_reads_like_a_number_is_written_quoted(tmp_path):
    spec = reference_b0().replace(name="1e3")
    dump_spec(spec, tmp_path / "odd.yaml")
    assert load_spec(tmp_path / "odd.yaml").name == "1e3"
    assert yaml.safe_load(yaml_text({"name": "1e3"})) == {"name": "1e3"}


def test_a_null_field_says_null_once():
    data = spec_to_dict(reference_b0())
    data["resolution"] = None
    with pytest.raises(InputError) as refused:
        spec_from_dict(data)
    assert str(refused.value).endswith("spec.resolution: must be an integer, got null")


def test_load_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: line 2, column 1: YAML syntax error"):
        load_yaml(path, "spec file")
    with pytest.raises(InputError, match="no such spec file"):
        load_yaml(tmp_path / "missing.yaml", "spec file")
