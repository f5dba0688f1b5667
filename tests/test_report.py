"""report.html of a search and of a grid: one self-contained page (plotly.js inside, no script fetched from the
network) whose figures are there and hold the run's trials, read back from the page itself."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import optuna
import pytest
import yaml
from test_grid_scale import GRID_ARGS, TINY_BASE, ZERO_COST_ARGS
from typer.testing import CliRunner

from effnet.cli.app import app

from postgres import TINY_SEARCH

runner = CliRunner()


def figures(page: str) -> list[dict]:
    """Every `Plotly.newPlot(id, data, layout, config)` call of the page, as {"data": [...], "layout": {...}}."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, end = decoder.raw_decode(page, match.end())
        layout, _ = decoder.raw_decode(page, page.index("{", end))
        found.append({"data": data, "layout": layout})
    return found


def assert_opens_offline_and_light(run_dir: Path) -> str:
    """The report loads plotly.js from the copy beside it (no network) and is small without it; returns the page."""
    page = (run_dir / "report.html").read_text()
    assert re.findall(r"<script[^>]+src=\"([^\"]+)\"", page) == ["plotly.min.js"]
    assert "plotly.js v" not in page and len(page.encode()) < 1_000_000  # was 4.8 MB with plotly.js inside
    shared = (run_dir / "plotly.min.js").read_text()
    assert shared.count("plotly.js v") >= 1 and len(shared) > 3_000_000  # the library's banner; some megabytes
    return page


def assert_whole_ticks_and_every_bar_named(history: dict, importance: dict) -> None:
    axis = history["layout"]["xaxis"]
    assert axis["tick0"] == 0 and isinstance(axis["dtick"], int) and axis["dtick"] >= 1  # no trial 0.5
    bars = importance["data"][0]["y"]
    assert importance["layout"]["yaxis"]["tickmode"] == "linear" and importance["layout"]["yaxis"]["dtick"] == 1
    assert importance["layout"]["height"] >= 24 * len(bars)  # a line of text per bar


def title(figure: dict) -> str:
    t = figure["layout"].get("title", {})
    return t.get("text", "") if isinstance(t, dict) else str(t)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("search")
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--trials", "6", "--run-dir", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] == str(run_dir / "report.html")
    return run_dir


def test_search_report_holds_history_importances_and_accuracy_against_flops(search_run):
    page = assert_opens_offline_and_light(search_run)
    with (search_run / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    trained = [r for r in rows if r["state"] == "COMPLETE" and r["in_band"] == "True"]
    choices = {name for name in rows[0] if re.fullmatch(r"s\d+_\w+", name)}  # the space's choices, by stage
    history, importance, accuracy = figures(page)
    assert "Optimization History" in title(history)
    points = next(trace for trace in history["data"] if trace.get("mode") == "markers")
    assert sorted(points["y"]) == pytest.approx(sorted(float(r["reward"]) for r in trained))
    assert "Importance" in title(importance)
    assert set(importance["data"][0]["y"]) <= set(choices) and len(importance["data"][0]["y"]) >= 2
    assert_whole_ticks_and_every_bar_named(history, importance)
    assert title(accuracy) == "Accuracy against FLOPs"
    candidates = next(trace for trace in accuracy["data"] if trace["name"] == f"completed ({len(trained)})")
    assert sorted(candidates["x"]) == pytest.approx(sorted(int(r["flops"]) / 1e6 for r in trained))
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["in_band"] == "True"]
    outside = [r for r in rows if r["in_band"] == "False"]
    assert next(trace for trace in accuracy["data"] if trace["name"] == f"pruned ({len(pruned)})")
    ticks = next(trace for trace in accuracy["data"] if trace["name"].startswith("outside the band"))
    assert sorted(ticks["x"]) == pytest.approx(sorted(int(r["flops"]) / 1e6 for r in outside))
    chance = [shape for shape in accuracy["layout"]["shapes"] if shape["type"] == "line" and shape["y0"] == shape["y1"]]
    assert [shape["y0"] for shape in chance] == [pytest.approx(0.25)]  # synthetic: 4 balanced classes
    b0 = yaml.safe_load((search_run / "b0.yaml").read_text())["provenance"]
    star = next(trace for trace in accuracy["data"] if trace["name"] == "b0")
    assert star["x"] == [pytest.approx(b0["flops"] / 1e6)] and star["y"] == [pytest.approx(b0["accuracy"])]
    band = [shape for shape in accuracy["layout"]["shapes"] if shape["type"] == "rect"][0]
    assert (band["x0"], band["x1"]) == (pytest.approx(0.7), pytest.approx(1.3))  # 1M ± 30 %
    assert f"optuna-dashboard {search_run / 'study.journal'}" in page


def test_grid_report_holds_the_score_over_the_grid_and_the_chosen_point(tmp_path):
    result = runner.invoke(
        app, ["grid-scale", "--base", TINY_BASE, *GRID_ARGS, *ZERO_COST_ARGS, "--run-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    page = assert_opens_offline_and_light(tmp_path)
    history, importance, surface = figures(page)
    assert "Optimization History" in title(history) and "Importance" in title(importance)
    assert_whole_ticks_and_every_bar_named(history, importance)
    context = html.unescape(re.search(r"<ul>(.*?)</ul>", page, re.S).group(1))
    assert "None" not in context and "grid grid" not in context
    assert "the proxy's noise not measured (one run per network)" in context  # one repeat: no noise measured
    assert set(importance["data"][0]["y"]) <= {"alpha", "beta", "gamma"}
    with (tmp_path / "grid.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["score"]]
    points = next(trace for trace in surface["data"] if trace["name"] == "points")
    drawn = sorted(zip(points["x"], points["y"], points["z"], points["marker"]["color"], strict=True))
    written = sorted((float(r["alpha"]), float(r["beta"]), float(r["gamma"]), float(r["score"])) for r in rows)
    assert [d[:3] for d in drawn] == [w[:3] for w in written]  # every scored point, twins included
    assert [d[3] for d in drawn] == pytest.approx([w[3] for w in written], rel=1e-5)  # grid.csv keeps 6 digits
    chosen = yaml.safe_load((tmp_path / "coefficients.yaml").read_text())
    marked = next(trace for trace in surface["data"] if trace["name"] == "chosen")
    assert (marked["x"], marked["y"], marked["z"]) == ([chosen["alpha"]], [chosen["beta"]], [chosen["gamma"]])


def test_the_report_figures_read_the_trials_without_copying_them_per_parameter(monkeypatch):
    """Optuna's figures read `study.trials` (a deep copy of every trial) once per parameter: the report of a
    1,500-trial search with 42 choices took over a minute. The report's study hands out its trials as stored."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    from effnet.nas.study.html_report import history_section, importance_section, scored_study

    choices = {f"stage{i}": CategoricalDistribution([1, 2, 3]) for i in range(8)}
    trials = [
        create_trial(
            params={name: (n + i) % 3 + 1 for i, name in enumerate(choices)},
            distributions=choices,
            value=0.0,
            user_attrs={"accuracy": 0.5 + 0.01 * (n % 7)},
        )
        for n in range(40)
    ]
    study = scored_study(trials, lambda t: t.user_attrs["accuracy"], "report")
    copies = []
    get_all_trials = optuna.storages.InMemoryStorage.get_all_trials

    def counted(self, study_id, deepcopy=True, states=None):
        copies.append(deepcopy)
        return get_all_trials(self, study_id, deepcopy=deepcopy, states=states)

    monkeypatch.setattr(optuna.storages.InMemoryStorage, "get_all_trials", counted)
    assert importance_section(study, "accuracy", "candidate").figure is not None
    assert history_section(study, "accuracy", "candidate").figure is not None
    assert len(copies) > len(choices) and copies.count(True) <= 1  # read per parameter, copied once at most
    assert [t.value for t in study.trials] == [t.user_attrs["accuracy"] for t in trials]


@pytest.mark.parametrize(
    "scores",
    [
        [1e-12, 1e-12 + 1e-14, 1e-12, 1e-12 + 2e-14, 1e-12],  # every network at the zero-cost floor, but rounding
        [0.5, 0.5, 0.5 + 1e-12, 0.5, 0.5],
    ],
    ids=["floor-and-rounding", "one-part-in-1e12"],
)
def test_importances_of_scores_apart_by_rounding_only_say_so_instead_of_failing(scores):
    """fANOVA raises 'zero total variance in all trees' on scores that differ by rounding (a zero-cost search whose
    every network scored the floor): the report says they are the same instead of ending the search with exit 1."""
    from effnet.nas.study.html_report import importance_section

    choices = optuna.distributions.CategoricalDistribution([0, 1, 2])
    study = optuna.create_study(direction="maximize")
    for i, score in enumerate(scores):
        params = {"kernel": i % 2, "expand": i % 3}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dict.fromkeys(params, choices), value=score)
        )
    section = importance_section(study, "reward", "candidate")
    assert section.figure is None and "has the same reward" in section.caption
