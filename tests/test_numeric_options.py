"""Random values in every numeric option of every command: each run ends with exit 0 (accepted) or 2 (one clear
line), never 1 (an unexpected error), never a hang.

The work behind an accepted command is stubbed out (no trial, training or proxy scoring runs), so each example
takes a fraction of a second; everything up to it (parsing, validation, the space's reach, the grid's points,
the family's members, the files) runs for real.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from refusals import refusal_stdout_is_right
from typer.testing import CliRunner

from effnet.cli.app import app

from postgres import TINY_BASE, TINY_SEARCH, TINY_SPACE

runner = CliRunner()
NOT_NUMERIC = {
    "--objective",
    "--space",
    "--proxy",
    "--data",
    "--storage",
    "--study",
    "--run-dir",
    "--sampler",
    "--pruner",
    "--device",
    "--json",
    "--base",
    "--coefficients",
    "--flops-ratio",
    "--match-flops",
    "--preset",
    "--fvcore",
    "--latency",
    "--runtime",
    "--compile",
    "--resume",
    "--augment",
    "--cache-dir",
    "--decode",
    "--init",
    "--checkpoint",
    "--format",
    "--out",
    "--supernet-kernels",
    "--supernet-recipe",
    "--supernet-ops",
    "--weights",
    "--force",
    "--rebuild",
    "--latency-runtime",
    "--latency-device",
}

plain = st.one_of(
    st.integers(1, 40),
    st.floats(0.001, 2.5),
    st.integers(-(10**6), 10**6),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["0", "-0", "1e-13", "1e300", "-1", "nan", "inf", "-inf", "18446744073709551617", "1.5", "", " "]),
).map(str)
"""Numbers as typed: ordinary ones (which many options accept), huge, fractional, negative, not finite, empty."""
sizes = st.one_of(plain, st.tuples(plain, st.sampled_from(["K", "M", "G", "T", "X", "MM"])).map("".join))
durations = st.one_of(plain, st.tuples(plain, st.sampled_from(["s", "m", "h", "d"])).map("".join), st.just("none"))
ranges = st.one_of(plain, st.tuples(plain, plain).map(":".join), st.tuples(plain, plain, plain).map(":".join))
phis = st.one_of(plain, st.lists(plain, min_size=1, max_size=4).map(",".join))
latencies = st.one_of(plain, st.tuples(plain, st.sampled_from(["ms", "s", "us", "µs", "m", "h"])).map("".join))
pixels = st.one_of(st.integers(-10, 4096), st.integers(4097, 10**9), st.sampled_from(["nan", "1e3", "32.0"])).map(str)
"""Resolutions, valid (the built-in data stay at their own size whatever the resolution) and invalid."""

NUMERIC = {
    "search": {
        "--target-flops": sizes,
        "--flops-tolerance": plain,
        "--proxy-epochs": plain,
        "--proxy-resolution": pixels,
        "--batch-size": plain,
        "--trials": plain,
        "--timeout": durations,
        "--workers": plain,
        "--seed": plain,
        "--threads": plain,
        "--proxy-train-images": plain,
        "--proxy-val-images": plain,
        "--loader-workers": plain,
        "--supernet-epochs": plain,
        "--rescore-top": plain,
        "--classes": plain,
        "--resolution": pixels,
        "--target-latency": latencies,
        "--latency-tolerance": plain,
        "--latency-batch": plain,
        "--latency-threads": plain,
    },
    "grid-scale": {
        "--alpha-range": ranges,
        "--beta-range": ranges,
        "--gamma-range": ranges,
        "--step": plain,
        "--tolerance": plain,
        "--proxy-epochs": plain,
        "--proxy-resolution": pixels,
        "--batch-size": plain,
        "--max-points": plain,
        "--timeout": durations,
        "--workers": plain,
        "--seed": plain,
        "--threads": plain,
        "--phi": plain,
        "--repeats": plain,
        "--proxy-train-images": plain,
        "--proxy-val-images": plain,
        "--loader-workers": plain,
        "--classes": plain,
        "--batch": plain,
        "--latency-threads": plain,
        "--latency-repeats": plain,
    },
    "export-family": {
        "--alpha": plain,
        "--beta": plain,
        "--gamma": plain,
        "--phi": phis,
        "--classes": plain,
        "--batch": plain,
        "--threads": plain,
        "--repeats": plain,
    },
    "latency-table": {"--resolution": pixels, "--classes": plain, "--batch": plain, "--threads": plain},
    "describe": {"--batch": plain, "--threads": plain, "--repeats": plain},
    "export-model": {"--seed": plain},
    "predict": {"--top-k": plain},
    "train": {
        "--epochs": plain,
        "--batch-size": plain,
        "--lr": plain,
        "--resolution": pixels,
        "--warmup-epochs": plain,
        "--ema-decay": plain,
        "--label-smoothing": plain,
        "--weight-decay": plain,
        "--precise-bn": plain,
        "--seed": plain,
        "--loader-workers": plain,
    },
    "proxy-check": {
        "--target-flops": sizes,
        "--flops-tolerance": plain,
        "--proxy-epochs": plain,
        "--reference-epochs": plain,
        "--candidates": plain,
        "--proxy-resolution": pixels,
        "--seed": plain,
        "--threads": plain,
        "--proxy-train-images": plain,
        "--proxy-val-images": plain,
        "--loader-workers": plain,
        "--supernet-epochs": plain,
    },
}
BASE = {
    "search": ["search", *TINY_SEARCH, "--json"],
    "grid-scale": [
        "grid-scale",
        "--base",
        TINY_BASE,
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
        "--latency",
        "--json",
    ],
    "export-family": [
        "export-family",
        "--base",
        TINY_BASE,
        "--alpha",
        "1.2",
        "--beta",
        "1.1",
        "--gamma",
        "1.15",
        "--phi",
        "1",
        "--latency",
        "--json",
    ],
    "latency-table": ["latency-table", "--space", TINY_SPACE, "--json"],
    "train": ["train", TINY_BASE, "--data", "synthetic", "--resolution", "16", "--epochs", "1", "--json"],
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
        "--proxy-resolution",
        "16",
        "--threads",
        "1",
        "--json",
    ],
    "describe": ["describe", TINY_BASE, "--latency", "--json"],
    "export-model": ["export-model", TINY_BASE, "--format", "timm", "--json"],
    "predict": ["predict", TINY_BASE, str(Path(__file__).parent / "bad_inputs" / "data" / "one_class"), "--json"],
}
"""Quick valid settings for each command; the drawn values follow and override them."""
SECONDS = 60


def test_every_numeric_option_of_every_command_is_drawn():
    """A new option must be listed here, as numeric (with the values to draw) or not."""
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        options = {p.opts[0] for p in command.params if p.param_type_name == "option" and not p.hidden}
        assert options - NOT_NUMERIC == set(NUMERIC[name]), name


@pytest.fixture
def stubbed(monkeypatch):
    """Nothing trains or scores: a study runs no trial, training stops (exit 0) once its settings are checked,
    proxy-check gives each candidate made-up scores, a latency measurement times no run, a latency table times
    no part and no network."""
    from effnet.nas.latency import measure
    from effnet.nas.latency import table as latency_table
    from effnet.nas.latency.table_file import PartTime
    from effnet.nas.study import proxy_check as check
    from effnet.nas.study import runner as study_runner
    from effnet.nas.training import trainer

    monkeypatch.setattr(study_runner, "work", lambda *args, **kwargs: "budget")
    monkeypatch.setattr(study_runner, "spawn_workers", lambda *args, **kwargs: [])

    def trained(*args, **kwargs):
        raise SystemExit(0)

    def scored(specs, data, config, advance, supernet=None):
        results = [check.CandidateResult(index=i, spec=s, flops=i, params=i) for i, s in enumerate(specs)]
        for r in results:
            r.scores = {name: float(r.index) for name in (*config.proxies, check.REFERENCE)}
        return results

    monkeypatch.setattr(trainer, "train", trained)
    monkeypatch.setattr(check, "score_candidates", scored)
    monkeypatch.setattr(measure, "time_runs", lambda prepared, warmup, repeats, report: [0.001] * repeats)
    monkeypatch.setattr(
        latency_table, "time_parts", lambda parts, *args: {part.key: PartTime(0.001, 0.0) for part in parts}
    )
    monkeypatch.setattr(latency_table, "fit_factor", lambda *args: (1.0, 0.0))


class TookTooLong(Exception):
    pass


def run_within(args: list[str], seconds: int):
    def expired(signum, frame):
        raise TookTooLong(f"{' '.join(args)} ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        return runner.invoke(app, args, catch_exceptions=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("command", [name for name in NUMERIC if NUMERIC[name]])
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_random_values_end_with_exit_0_or_2(command, data, stubbed, tmp_path, one_torch_thread):
    options = NUMERIC[command]
    chosen = data.draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True), label="options")
    values = [(flag, data.draw(options[flag], label=flag)) for flag in chosen]
    run_dir = tmp_path / f"run{data.draw(st.integers(0, 10**9))}"
    where = {
        "export-model": ["--out", str(run_dir / "model.pt")],
        "predict": [],
        "describe": [],
        "latency-table": ["--cache-dir", str(run_dir)],
    }.get(command, ["--run-dir", str(run_dir)])
    args = [*BASE[command], *where, *[f"{flag}={value}" for flag, value in values]]
    result = run_within(args, SECONDS)
    event(f"exit {result.exit_code}")  # pytest --hypothesis-show-statistics shows how many were accepted
    assert result.exit_code in (0, 2), f"{values}: exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    if result.exit_code == 2:  # effnet's one line, or the command line parser's usage error (not a number)
        assert (
            result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 or "Invalid value" in result.output
        ), result.output
        refusal_stdout_is_right(result)


@pytest.mark.parametrize(
    "args, words",
    [
        (["search", "--seed", "1e300"], "Invalid value for '--seed'"),
        (["grid-scale", "--repeats", "two"], "Invalid value for '--repeats'"),
        (["search", "--no-such-flag"], "No such option: --no-such-flag"),
        (["train"], "Missing argument 'SPEC.yaml'"),
    ],
)
def test_what_the_parser_refuses_is_one_line_and_exit_2_from_the_command(args, words, monkeypatch, capsys):
    """The `effnet` entry point words the command-line parser's refusals as its own: one `error:` line on stderr
    naming the problem and where the help is, exit 2 (click's own would print a usage box of several lines)."""
    from effnet.cli.app import main

    monkeypatch.setattr(sys, "argv", ["effnet", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert f"(see effnet {args[0]} --help)" in err


def test_under_json_a_refusal_is_also_one_json_object_on_stdout(monkeypatch, capsys):
    """A script that reads stdout gets an object on failure as on success: the parser's refusal (outside the
    command) and the command's own (inside it) alike."""
    from effnet.cli.app import main

    for args, words in (
        (["search", "--seed", "1e300", "--json"], "Invalid value for '--seed'"),
        (["search", "--target-flops", "400X", "--json"], "'400X' is not a size"),
    ):
        monkeypatch.setattr(sys, "argv", ["effnet", *args])
        with pytest.raises(SystemExit) as stopped:
            main()
        out, err = capsys.readouterr()
        assert stopped.value.code == 2 and err.count("\n") == 1 and words in err
        assert json.loads(out) == {"error": err.strip().removeprefix("error: "), "exit_code": 2}
