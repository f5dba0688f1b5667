"""Stage 1: the search space, the reward, the FLOPs band, the study loop, resume, workers, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.net.flops import analytic_flops
from effnet.nas.net.model import build_model, count_parameters
from effnet.nas.net.spec_file import load_spec, spec_from_dict, spec_to_dict
from effnet.nas.proxies.config import ProxyConfig
from effnet.nas.proxies.proxy import ProxyFailure
from effnet.nas.proxies.supernet import Supernet
from effnet.nas.redact import redact_url
from effnet.nas.search.config import SearchConfig
from effnet.nas.search.job import SearchJob
from effnet.nas.search.reward import FlopsBand, hard_reward, mnasnet_reward
from effnet.nas.search.search import fitted_space
from effnet.nas.search.trial import TrialObjective
from effnet.nas.search.trials import summarize
from effnet.nas.space.load import load_space, space_from_dict
from effnet.nas.study.opening import open_study
from effnet.nas.study.study_config import StudyConfig
from effnet.scaling.presets import reference_b0

from postgres import TINY_SEARCH

TINY = str(Path(__file__).parent / "data" / "tiny_space.yaml")
runner = CliRunner()


# -- the space ------------------------------------------------------------------------------------

B0_DECISIONS = {  # EfficientNet-B0, paper Table 1, written as decisions of the default space
    1: ("mbconv", 1, 3),
    2: ("mbconv", 6, 3),
    3: ("mbconv", 6, 5),
    4: ("mbconv", 6, 3),
    5: ("mbconv", 6, 5),
    6: ("mbconv", 6, 5),
    7: ("mbconv", 6, 3),
}


def b0_params() -> dict:
    params = {}
    for stage, (block, expand, kernel) in B0_DECISIONS.items():
        params.update(
            {
                f"s{stage}_block": block,
                f"s{stage}_expand": expand,
                f"s{stage}_kernel": kernel,
                f"s{stage}_se_ratio": 0.25,
                f"s{stage}_skip": True,
                f"s{stage}_width": 1.0,
                f"s{stage}_repeats_offset": 0,
            }
        )
    return params


def test_default_space_contains_reference_b0():
    spec = load_space().spec_from_params(b0_params())
    reference = reference_b0()
    assert spec.stages == reference.stages
    assert (spec.stem, spec.head, spec.resolution, spec.batch_norm) == (
        reference.stem,
        reference.head,
        reference.resolution,
        reference.batch_norm,
    )
    assert count_parameters(build_model(spec)) == 5_288_548


def test_nested_space_contains_reference_b0_and_only_choices_that_nest():
    """B0 is a point of it, and its nested supernet holds one op per layer: every path's weights are slices of
    one network's."""
    space = load_space("efficientnet-nested")
    fixed = {k for k in b0_params() if k.endswith(("_block", "_skip")) or k == "s1_expand"}  # one option each
    spec = space.spec_from_params({k: v for k, v in b0_params().items() if k not in fixed})
    assert spec.stages == reference_b0().stages and spec.stem == reference_b0().stem
    assert [s.block for s in space.stages] == [("mbconv",)] * 7 and [s.skip for s in space.stages] == [(True,)] * 7
    supernet = Supernet(space, resolution=32, num_classes=10, kernels="shared", ops="nested")
    # layers per stage: the deepest repeats, 1+1, 2+1, 2+1, 3+1, 3+1, 4+1, 1+1
    assert [sorted(layer.ops) for stage in supernet.stages for layer in stage] == [["mbconv1"]] * 2 + [["mbconv"]] * 21


def test_mnasnet_space_follows_mobilenet_v2_skeleton():
    space = load_space("mnasnet")
    assert [s.out_channels for s in space.stages] == [16, 24, 32, 64, 96, 160, 320]  # MobileNetV2 Table 2
    assert [s.stride for s in space.stages] == [1, 2, 2, 2, 1, 2, 1]
    assert all(s.width == (0.75, 1.0, 1.25) and s.expand == (3, 6) for s in space.stages)


@pytest.mark.parametrize("name", ["efficientnet", "mnasnet"])
def test_every_sampled_spec_is_valid_and_shares_choices_within_a_stage(name):
    space = load_space(name)
    rng = random.Random(7)
    for _ in range(300):
        spec = space.random_spec(rng)
        assert spec_from_dict(spec_to_dict(spec)) == spec  # passes full validation
        for stage, skeleton in zip(spec.stages, space.stages, strict=True):
            assert stage.stride == skeleton.stride
            assert stage.repeats - skeleton.repeats in skeleton.repeats_offset
            assert stage.out_channels % 8 == 0
            assert stage.block != "mbconv" or stage.expand in skeleton.expand


def test_optuna_trials_sample_valid_specs():
    space = load_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(50):
        trial = study.ask()
        spec = space.suggest(trial)
        assert spec_from_dict(spec_to_dict(spec)) == spec
        assert space.spec_from_params(trial.params) == spec
        study.tell(trial, 0.0)


def test_bad_space_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text(Path(TINY).read_text().replace("kernel: [3, 5]", "kernel: [3, 4]"))
    result = runner.invoke(app, ["search", "--space", str(bad), "--data", "synthetic", "--trials", "1"])
    assert result.exit_code == 2
    assert "choices.kernel" in result.output and "odd" in result.output and "Traceback" not in result.output
    with pytest.raises(Exception, match="unknown key 'colour'"):
        space_from_dict({"base": {}, "choices": {}, "skeleton": [], "colour": 1}, "x.yaml")


# -- reward and band ------------------------------------------------------------------------------


def test_soft_reward_matches_hand_computation():
    # 2 ** -0.07 = exp(-0.07 ln 2) = 0.952638...: doubling the FLOPs costs 4.7 % relative accuracy
    assert mnasnet_reward(0.8, 800e6, 400e6) == pytest.approx(0.8 * 0.9526380, rel=1e-6)
    assert mnasnet_reward(0.8, 200e6, 400e6) == pytest.approx(0.8 / 0.9526380, rel=1e-6)
    assert mnasnet_reward(0.75, 400e6, 400e6) == 0.75


def test_hard_reward_is_flat_under_target_and_inverse_over_it():
    assert hard_reward(0.7, 390e6, 400e6) == 0.7
    assert hard_reward(0.7, 500e6, 400e6) == pytest.approx(0.7 * 400 / 500)


def test_flops_band_constraint_sign():
    band = FlopsBand(400_000_000, 0.1)
    assert (band.low, band.high) == (360e6, 440e6)
    assert band.violation(400e6) < 0 and band.violation(440e6) <= 0
    assert band.violation(300e6) == pytest.approx(0.15) and band.violation(480e6) == pytest.approx(0.1)
    assert FlopsBand(400_000_000, 0.1, hard=True).high == 400e6


# -- the trial loop ---------------------------------------------------------------------------------


class RecordingProxy:
    """Scores by a fixed rule and remembers what it was asked to score; fails on request."""

    name = "recording"

    def __init__(self, fail_every: int = 0):
        self.scored: list[int] = []
        self.fail_every = fail_every

    def score(self, spec, report=None):
        self.scored.append(analytic_flops(spec))
        if self.fail_every and len(self.scored) % self.fail_every == 0:
            raise ProxyFailure("loss became NaN at epoch 1 step 3")
        if report:
            report(1, 0.5)
        return 0.5


def tiny_config(tmp_path, proxy: dict | None = None, study: dict | None = None, **overrides) -> SearchConfig:
    settings = dict(
        target_flops=1_000_000,
        flops_tolerance=0.3,
        space=TINY,
        trials=15,
        pruner="none",
        proxy=ProxyConfig(data="synthetic", **(proxy or {})),
        study=StudyConfig(run_dir=tmp_path, name="search", **(study or {})),
    )
    settings.update(overrides)
    return SearchConfig(**settings)


def study_of(config: SearchConfig) -> optuna.Study:
    return open_study(SearchJob(config, fitted_space(config)[0]), config.study)[0]  # as the search builds it


def test_out_of_band_candidates_are_never_trained(tmp_path):
    config = tiny_config(tmp_path)
    proxy = RecordingProxy()
    study = study_of(config)
    study.optimize(TrialObjective(config, load_space(TINY), lambda: proxy), n_trials=80)
    band = config.band
    outside = [t for t in study.trials if not t.user_attrs["in_band"]]
    inside = [t for t in study.trials if t.user_attrs["in_band"]]
    assert outside and inside
    assert all(band.contains(f) for f in proxy.scored)
    assert len(proxy.scored) == len(inside)
    assert all("accuracy" not in t.user_attrs and t.constraints["flops_band"] > 0 for t in outside)
    assert all(t.constraints["flops_band"] <= 0 for t in inside)


class SlowProxy:
    """Trains for 0.2 s, then reports one epoch."""

    name = "slow"

    def score(self, spec, report=None):
        time.sleep(0.2)
        report(1, 0.5)
        return 0.5


def test_training_time_and_reporting_time_are_recorded_apart(tmp_path, monkeypatch):
    """trials.csv's proxy_seconds is the training alone: a slow report (a storage write, a pruning check) is
    counted in report_seconds, so the share of time outside training is not hidden inside the training's."""
    original = optuna.trial.Trial.report

    def slow_report(self, value, step):
        time.sleep(0.15)
        original(self, value, step)

    monkeypatch.setattr(optuna.trial.Trial, "report", slow_report)
    config = tiny_config(tmp_path)
    study = study_of(config)
    study.optimize(TrialObjective(config, load_space(TINY), SlowProxy), n_trials=12)
    trained = [t for t in study.trials if t.user_attrs["in_band"]]
    assert trained
    for t in trained:
        assert 0.2 <= t.user_attrs["proxy_seconds"] < 0.3
        assert t.user_attrs["report_seconds"] >= 0.15
        assert t.user_attrs["proxy_seconds"] + t.user_attrs["report_seconds"] <= t.duration.total_seconds()


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    config = tiny_config(tmp_path)
    proxy = RecordingProxy(fail_every=2)
    study = study_of(config)
    study.optimize(TrialObjective(config, load_space(TINY), lambda: proxy), n_trials=60, catch=(Exception,))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["in_band"]]
    assert len(failed) >= 2 and len(completed) >= 2
    assert all(t.user_attrs["error"] == "ProxyFailure: loss became NaN at epoch 1 step 3" for t in failed)


def test_resumed_study_must_keep_its_settings(tmp_path):
    study_of(tiny_config(tmp_path))
    with pytest.raises(Exception, match=r"created with other settings \(target_flops: 1000000 -> 2000000\);"):
        study_of(tiny_config(tmp_path, target_flops=2_000_000))


def test_a_refused_resume_names_only_the_changed_settings_before_decoding_any_data(tmp_path):
    from images import jpeg_folder

    folder = jpeg_folder(tmp_path / "images", classes=2, per_class=6)
    study_of(dataclasses.replace(tiny_config(tmp_path / "run"), proxy=ProxyConfig(data=str(folder), epochs=2)))
    cache = tmp_path / "cache"
    result = runner.invoke(
        app,
        [
            "search",
            "--space",
            TINY,
            "--target-flops",
            "1M",
            "--flops-tolerance",
            "0.3",
            "--data",
            str(folder),
            "--proxy-epochs",
            "10",
            "--run-dir",
            str(tmp_path / "run"),
            "--cache-dir",
            str(cache),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "created with other settings (proxy.epochs: 2 -> 10); rerun with those" in result.stderr
    assert not cache.exists() or not any(cache.iterdir())  # refused before the folder was decoded into a cache


# -- the command ------------------------------------------------------------------------------------


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "effnet.cli", *args], capture_output=True, text=True, timeout=300)


def test_search_command_writes_a_b0_inside_the_band(tmp_path):
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--trials", "6", "--run-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["trials_completed"] + summary["trials_pruned"] + summary["trials_failed"] >= 6
    spec = load_spec(summary["best_spec"])
    assert 0.7e6 <= summary["flops"] <= 1.3e6
    assert analytic_flops(spec) == summary["flops"]  # certified by fvcore, equal to the analytic count
    assert spec.provenance["trial"] == summary["trial"] and spec.provenance["reward"] == summary["reward"]
    for name in ("trials.csv", "history.png", "accuracy_vs_flops.png", "run.yaml", "study.journal"):
        assert (tmp_path / name).stat().st_size > 0


PROGRESS_LINE = re.compile(r"^\[\d+:\d\d:\d\d\] search (\d+)/3\b", re.M)


@pytest.mark.slow
def test_progress_piped_is_plain_lines_one_per_candidate_and_tables_do_not_wrap(tmp_path):
    done = run_cli(["search", *TINY_SEARCH, "--trials", "3", "--run-dir", str(tmp_path / "plain")])
    assert done.returncode == 0, done.stderr
    counts = [int(n) for n in PROGRESS_LINE.findall(done.stderr)]
    assert counts == [0, 1, 2, 3], done.stderr  # one line as it starts, then one per trained candidate
    assert "━" not in done.stderr and "…" not in done.stderr + done.stdout  # no bar, no text cut to a width
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert rows and all(re.match(r"│ +\d+ │", row) for row in rows), done.stdout  # one line per candidate


@pytest.mark.slow
def test_progress_with_json_goes_to_stderr_and_stdout_is_the_json_alone(tmp_path):
    done = run_cli(["search", *TINY_SEARCH, "--trials", "3", "--run-dir", str(tmp_path), "--json"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trials_completed"] + json.loads(done.stdout)["trials_pruned"] == 3
    assert [int(n) for n in PROGRESS_LINE.findall(done.stderr)] == [0, 1, 2, 3], done.stderr


def wait_for(predicate, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def completed_trials(run_dir: Path) -> dict[int, float]:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not (run_dir / "study.journal").exists():
        return {}
    storage = JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    try:
        study = optuna.load_study(study_name="search", storage=storage)
    except KeyError:
        return {}
    return {
        t.number: t.value
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        if t.user_attrs.get("in_band")
    }


@pytest.mark.slow
def test_resume_after_a_killed_run_keeps_every_completed_trial(tmp_path):
    args = ["search", *TINY_SEARCH, "--proxy-epochs", "2", "--trials", "200", "--run-dir", str(tmp_path), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "effnet.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: len(completed_trials(tmp_path)) >= 4, 180), "the search made no progress"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = completed_trials(tmp_path)
    budget = len(before) + 3
    result = run_cli(
        ["search", *TINY_SEARCH, "--proxy-epochs", "2", "--trials", str(budget), "--run-dir", str(tmp_path), "--json"]
    )
    assert result.returncode == 0, result.stderr
    after = completed_trials(tmp_path)
    assert all(after.get(n) == v for n, v in before.items()), "a completed trial was lost or changed"
    summary = json.loads(result.stdout)
    assert summary["trials_completed"] + summary["trials_pruned"] >= budget


@pytest.mark.slow
def test_two_workers_share_one_study_and_count_each_trial_once(tmp_path):
    result = run_cli(
        [
            "search",
            *TINY_SEARCH,
            "--proxy-epochs",
            "2",
            "--trials",
            "12",
            "--workers",
            "2",
            "--run-dir",
            str(tmp_path),
            "--json",
        ]
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    import csv

    with (tmp_path / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    numbers = [int(r["number"]) for r in rows]
    assert len(numbers) == len(set(numbers))
    trained = [r for r in rows if r["in_band"] == "True" and r["state"] in ("COMPLETE", "PRUNED")]
    # each worker stops once the study holds 12 trained trials: at most one extra from the other worker
    assert 12 <= len(trained) <= 13
    assert summary["trials_completed"] + summary["trials_pruned"] == len(trained)
    assert len({r["worker"] for r in trained}) == 2


@pytest.mark.parametrize("target", ["400X", "-5M", "0", "abc", "1e400"])
def test_bad_targets_exit_2_with_one_line(target):
    result = runner.invoke(app, ["search", "--target-flops", target, "--data", "synthetic"])
    assert result.exit_code == 2
    assert "--target-flops" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_data_path_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["search", "--data", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path)])
    assert result.exit_code == 2 and "nowhere" in result.output and "Traceback" not in result.output


def test_unreachable_storage_is_a_clear_error_without_the_password(tmp_path):
    url = "postgresql://effnet:s3cret-pw@127.0.0.1:1/effnet"
    result = runner.invoke(app, ["search", *TINY_SEARCH, "--storage", url, "--run-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "cannot reach the storage" in result.output and "s3cret-pw" not in result.output
    lines = result.stderr.splitlines()
    assert lines == [next(line for line in lines if line.startswith("error: "))]


def test_redact_url_hides_passwords_only():
    assert redact_url("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("sqlite:///runs/a.db") == "sqlite:///runs/a.db"


def test_impossible_tolerance_is_rejected():
    result = runner.invoke(app, ["search", "--flops-tolerance", "1.5", "--data", "synthetic"])
    assert result.exit_code == 2 and "--flops-tolerance" in result.output


def test_default_band_holds_the_reference_b0():
    # The reference B0 (399,352,864 FLOPs by fvcore on a reference implementation) lies inside the default
    # 400M ± 10 % band.
    assert FlopsBand(400_000_000, 0.1).contains(399_352_864)
    assert not FlopsBand(400_000_000, 0.1, hard=True).contains(400_000_001)


# -- the study's settings and seeds ------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"proxy": {"batch_size": 8}},
        {"study": {"seed": 1}},
        {"proxy": {"epochs": 2}},
        {"proxy": {"resolution": 16}},
        {"objective": "hard"},
    ],
)
def test_a_resumed_study_refuses_any_setting_that_changes_a_score(tmp_path, change):
    study_of(tiny_config(tmp_path))
    with pytest.raises(Exception, match="created with other settings"):
        study_of(tiny_config(tmp_path, **change))


def test_threads_workers_timeout_and_device_may_change_on_resume(tmp_path):
    study_of(tiny_config(tmp_path))
    study_of(tiny_config(tmp_path, study={"threads": 2, "workers": 3, "timeout_s": 60.0, "device": "cpu"}))


def first_draws(study: optuna.Study, space, workers: int, rounds: int) -> list[list[str]]:
    """Each worker (its own sampler on the shared study) asks `rounds` trials, in turn; their specs."""
    draws: list[list[str]] = [[] for _ in range(workers)]
    samplers = [SearchJob(tiny_config(Path("unused")), space).make_sampler for _ in range(workers)]
    from effnet.nas.study.worker_seeds import SeededPerWorker

    views = [
        optuna.load_study(study_name=study.study_name, storage=study._storage, sampler=SeededPerWorker(make, 0))
        for make in samplers
    ]
    for _ in range(rounds):
        for index, view in enumerate(views):
            trial = view.ask()
            draws[index].append(space.suggest(trial).summary)
            view.tell(trial, 0.0)
    return draws


def test_no_two_workers_of_a_study_share_a_random_stream():
    """Eight workers (four machines of two, say) on one study, all with the study's seed: the old policy
    seed + worker index gave machine k's worker i the stream of machine k+1's worker i - 1. Each worker's
    sampler is now seeded by the study seed and the number of its first trial, unique in the study."""
    from effnet.nas.study.worker_seeds import worker_seed

    space = load_space(TINY)
    study = optuna.create_study(directions=["maximize"])
    draws = first_draws(study, space, workers=8, rounds=3)
    assert len({tuple(d) for d in draws}) == 8
    assert len({worker_seed(0, n) for n in range(100_000)}) == 100_000


def test_a_fresh_one_worker_study_is_reproducible_from_its_seed():
    space = load_space(TINY)
    runs = [first_draws(optuna.create_study(directions=["maximize"]), space, workers=1, rounds=12) for _ in range(2)]
    assert runs[0] == runs[1]


class ReportingProxy:
    """Trains `epochs` epochs of 0.05 s, reporting each; remembers how many ran."""

    name = "reporting"

    def __init__(self, epochs: int = 3):
        self.epochs = epochs
        self.ran: list[int] = []

    def score(self, spec, report=None):
        for epoch in range(1, self.epochs + 1):
            time.sleep(0.05)
            self.ran.append(epoch)
            report(epoch, 0.5)
        return 0.5


@pytest.mark.parametrize("objective", ["reward", "pareto"])
def test_the_time_limit_stops_a_training_at_its_next_epoch_for_every_objective(tmp_path, objective):
    """Stopped, not judged: the trial fails as one a stop signal cut short, to be trained again by the next run,
    and counts toward no budget (as pruned, it filled the budget with a candidate never trained to the end)."""
    from effnet.nas.search.trial import TimeLimitReached
    from effnet.nas.search.trials import counts_toward_budget

    config = tiny_config(tmp_path, objective=objective)
    proxy = ReportingProxy()
    objective_fn = TrialObjective(config, load_space(TINY), lambda: proxy, deadline=time.time() - 1)
    study = study_of(config)
    study.optimize(objective_fn, n_trials=40, catch=(TimeLimitReached,))
    stopped = [t for t in study.trials if t.user_attrs["in_band"]]
    assert stopped and all(t.state == optuna.trial.TrialState.FAIL for t in stopped)
    assert proxy.ran == [1] * len(stopped)  # each stopped after its first epoch
    assert all(t.user_attrs["interrupted"] and "time limit" in t.user_attrs["fail_reason"] for t in stopped)
    assert not any(counts_toward_budget(t) for t in stopped)


def test_a_search_whose_only_candidate_the_time_limit_cut_trains_it_again_on_the_rerun(tmp_path):
    """--trials 1, a 30-epoch candidate, a time limit it cannot finish in: the first run ends with no b0; the rerun
    with a longer limit trains the same candidate to the end (it used to say "stopped by budget" forever)."""
    args = [*TINY_SEARCH, "--trials", "1", "--pruner", "none", "--run-dir", str(tmp_path), "--json"]
    args[args.index("--proxy-epochs") + 1] = "30"
    first = runner.invoke(app, ["search", *args, "--timeout", "1"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["best_spec"] is None
    second = runner.invoke(app, ["search", *args, "--timeout", "600"])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert summary["best_spec"] == str(tmp_path / "b0.yaml") and summary["trials_completed"] == 1
    with (tmp_path / "trials.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["in_band"] == "True"]
    cut, retried = rows
    assert cut["state"] == "FAIL" and cut["error"] == "stopped by the time limit; queued again for the next run"
    assert retried["state"] == "COMPLETE" and retried["epochs_trained"] == "30"
    choices = [name for name in cut if name[:1] == "s" and name[1:2].isdigit()]  # s1_block, ...
    assert [retried[c] for c in choices] == [cut[c] for c in choices]  # the same candidate


def test_a_candidate_that_finished_its_last_epoch_past_the_time_limit_completes(tmp_path):
    """Its training is done: stopping it then would record a finished candidate as pruned, and a search whose
    only candidates end so would write no b0.yaml."""
    config = tiny_config(tmp_path, proxy={"epochs": 1})
    proxy = ReportingProxy(epochs=1)
    objective_fn = TrialObjective(config, load_space(TINY), lambda: proxy, deadline=time.time() - 1)
    study = study_of(config)
    study.optimize(objective_fn, n_trials=40)
    trained = [t for t in study.trials if t.user_attrs["in_band"]]
    assert trained and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)


def test_a_pareto_searchs_table_marks_the_front_members_and_no_dominated_one(tmp_path):
    """The best-candidates table of a Pareto search ranks by accuracy, so it shows dominated candidates too (a
    0.919 at 400M beside a 0.953 at 377M): each row says whether it is on the front, by trials.csv's points."""
    import effnet

    result = effnet.search(tiny_config(tmp_path, objective="pareto", trials=8, proxy={"epochs": 1, "resolution": 16}))
    with (tmp_path / "trials.csv").open() as fh:
        done = [r for r in csv.DictReader(fh) if r["state"] == "COMPLETE" and r["in_band"] == "True"]
    points = {int(r["number"]): (float(r["accuracy"]), int(r["flops"])) for r in done}
    dominated = {
        n for n, (a, f) in points.items() if any(b >= a and g <= f and (b, g) != (a, f) for b, g in points.values())
    }
    assert result.top and all(t.on_front == (t.trial not in dominated) for t in result.top)
    shown = runner.invoke(
        app, ["search", *TINY_SEARCH, "--objective", "pareto", "--trials", "8", "--run-dir", str(tmp_path / "cli")]
    )
    assert shown.exit_code == 0, shown.output
    assert "front: on the Pareto front of accuracy and cost" in " ".join(shown.stdout.split())


def test_a_pareto_search_picks_the_front_member_with_the_best_soft_reward(tmp_path):
    result = runner.invoke(
        app, ["search", *TINY_SEARCH, "--objective", "pareto", "--trials", "8", "--run-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    import csv

    with (tmp_path / "trials.csv").open() as fh:
        done = [r for r in csv.DictReader(fh) if r["state"] == "COMPLETE" and r["in_band"] == "True"]
    points = [(float(r["accuracy"]), int(r["flops"]), int(r["number"])) for r in done]
    front = [p for p in points if not any(a >= p[0] and f <= p[1] and (a, f) != p[:2] for a, f, _ in points)]
    best = max(front, key=lambda p: mnasnet_reward(p[0], p[1], 1_000_000))
    assert summary["trial"] == best[2]
    assert load_spec(summary["best_spec"]).provenance["objective"] == "pareto"


def test_the_old_name_of_proxy_epochs_still_works_for_one_release(tmp_path):
    old = runner.invoke(
        app, ["search", *TINY_SEARCH, "--epochs", "1", "--trials", "1", "--run-dir", str(tmp_path), "--json"]
    )
    assert old.exit_code == 0, old.output
    assert "--epochs is deprecated and will be removed; use --proxy-epochs" in old.stderr
    assert yaml.safe_load((tmp_path / "run.yaml").read_text())["settings"]["proxy"]["epochs"] == 1
    both = runner.invoke(
        app, ["search", *TINY_SEARCH, "--epochs", "2", "--proxy-epochs", "1", "--run-dir", str(tmp_path / "both")]
    )
    assert both.exit_code == 2 and "--epochs is the old name of --proxy-epochs" in both.output


def test_a_band_no_sampled_network_falls_in_says_to_widen_it(tmp_path):
    """Not 'rerun to continue': rerunning samples more networks outside the same band; and a tolerance under half
    a per cent is shown as it is, not as ±0%."""
    args = ["search", *TINY_SEARCH, "--flops-tolerance", "0.00001", "--timeout", "3", "--run-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    shown = " ".join(result.stdout.split())
    assert "networks sampled fell inside the band: widen --flops-tolerance" in shown
    assert "rerun to continue" not in shown and "±0.001%" in shown


def test_a_search_stopped_while_its_first_in_band_candidate_trains_does_not_blame_the_band(tmp_path):
    """A candidate cut short is queued again, not failed: the summary counts it in the band, so the run does not
    say that no sampled network fell inside it."""
    config = tiny_config(tmp_path, proxy={"epochs": 1})
    study = study_of(config)

    def interrupted(trial):
        trial.set_user_attr("in_band", True)
        trial.set_user_attr("interrupted", True)
        raise RuntimeError("stopped by a signal")

    study.optimize(interrupted, n_trials=1, catch=(RuntimeError,))
    study.enqueue_trial(study.trials[0].params, user_attrs={"retry_of": 0, "retries": 1})
    summary = summarize(study)
    assert (summary.in_band, summary.failed) == (1, 0)
