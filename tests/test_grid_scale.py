"""Stage 2: the coefficient grid (exact values, the constraint, phi), twins (points that build one network:
scored once, in every worker and every run), the rule inside a twin group, repeats and the noise, the
command's files, and bad input."""

from __future__ import annotations

import csv
import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from typer.testing import CliRunner

from effnet.cli.app import app
from effnet.nas.net.spec_file import load_spec
from effnet.nas.proxies.config import ProxyConfig
from effnet.nas.study.opening import open_study
from effnet.nas.study.recovery import recover_stale_trials
from effnet.nas.study.runner import run_study
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.study.trial_attrs import POINT_ATTR, WORKER_ATTR
from effnet.nas.study.worker_loop import run_worker
from effnet.scaling import grid_study
from effnet.scaling.family import load_coefficients
from effnet.scaling.grid_results import network_results
from effnet.scaling.grid_space import GridConfig, GridDefinition, parse_range, parse_step
from effnet.scaling.grid_study import GridJob, queue_missing_evaluations
from effnet.scaling.presets import reference_b0
from effnet.scaling.twins import choose, twin_groups

from postgres import TINY_BASE

runner = CliRunner()

# alpha 1.1..1.3, beta and gamma 1.0..1.2 in steps of 0.1, |alpha*beta^2*gamma^2 - 2| <= 0.15 keeps 7 points
# (by hand: 1.1*1.1²*1.2² = 1.9166, 1.1*1.2²*1.1² = 1.9166, 1.2*1.1²*1.2² = 2.0909, 1.2*1.2²*1.1² = 2.0909,
#  1.3*1.0²*1.2² = 1.872, 1.3*1.1²*1.1² = 1.9033, 1.3*1.2²*1.0² = 1.872; every other combination misses)
TINY_POINTS = {
    (1.1, 1.1, 1.2),
    (1.1, 1.2, 1.1),
    (1.2, 1.1, 1.2),
    (1.2, 1.2, 1.1),
    (1.3, 1.0, 1.2),
    (1.3, 1.1, 1.1),
    (1.3, 1.2, 1.0),
}
# The networks they build, by hand. tests/data/tiny_base.yaml has one block per stage, so every alpha in
# (1, 2] rounds the repeats up to 2: alpha tells no point apart. Its channels (stem 8; 8, 16, 24; head 32)
# at width 1.0 and 1.1 round to the same multiples of 8 (8.8 -> 8, 17.6 -> 16, 26.4 -> 24, 35.2 -> 32), at
# 1.2 to 8, 8, 16, 32, 40 (28.8 -> 32, 38.4 -> 40). The proxy at 16 px trains gamma 1.0, 1.1, 1.2 at
# round(16 * gamma) = 16, 18 (17.6), 19 (19.2) px. Four networks, named by their first point in grid order:
TINY_NETWORKS = {
    (1.1, 1.1, 1.2): {(1.1, 1.1, 1.2), (1.2, 1.1, 1.2), (1.3, 1.0, 1.2)},  # width 1.0-1.1, 19 px
    (1.1, 1.2, 1.1): {(1.1, 1.2, 1.1), (1.2, 1.2, 1.1)},  # width 1.2, 18 px
    (1.3, 1.1, 1.1): {(1.3, 1.1, 1.1)},  # width 1.0-1.1, 18 px
    (1.3, 1.2, 1.0): {(1.3, 1.2, 1.0)},  # width 1.2, 16 px
}
GRID_ARGS = [
    "--alpha-range",
    "1.1:1.3",
    "--beta-range",
    "1.0:1.2",
    "--gamma-range",
    "1.0:1.2",
    "--step",
    "0.1",
    "--tolerance",
    "0.15",
]
PROXY_ARGS = [
    "--data",
    "synthetic",
    "--proxy-epochs",
    "1",
    "--proxy-resolution",
    "16",
    "--batch-size",
    "8",
    "--threads",
    "1",
]
ZERO_COST_ARGS = [
    "--proxy",
    "zero-cost",
    "--data",
    "synthetic",
    "--proxy-resolution",
    "16",
    "--batch-size",
    "8",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def tiny_base() -> Path:
    return Path(TINY_BASE)


def grid_scale(*args):
    return runner.invoke(app, ["grid-scale", *[str(a) for a in args]])


def study_trials(run_dir: Path, name: str = "grid") -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def point_of(trial) -> tuple[float, float, float] | None:
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    return (params["alpha"], params["beta"], params["gamma"]) if params else None


def points_of(trials, state=None) -> Counter:
    """How often each point has a trial (in `state`); trials without a point (surplus) left out."""
    return Counter(point_of(t) for t in trials if point_of(t) is not None and (state is None or t.state == state))


def surplus(trials) -> list:
    """Trials a worker took just as the queue ran dry: no point, pruned, marked."""
    extra = [t for t in trials if point_of(t) is None]
    assert all(t.state == TrialState.PRUNED and t.user_attrs.get("surplus") for t in extra)
    return extra


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def csv_key(row: dict[str, str]) -> tuple[float, float, float]:
    return float(row["alpha"]), float(row["beta"]), float(row["gamma"])


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def default_grid(phi: int = 1) -> GridDefinition:
    return GridDefinition.from_ranges(phi=phi)


# -- the grid ---------------------------------------------------------------------------------------


def test_step_005_holds_the_papers_gamma_exactly():
    values = parse_range("1.0:1.3", "--gamma-range").values(parse_step(0.05))
    assert values == (1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3)  # adding 0.05 three times to 1.0 gives 1.1500000000000001
    assert parse_range("1.2", "--alpha-range").values(parse_step(0.05)) == (1.2,)


def test_default_grid_keeps_the_papers_point_and_drops_far_ones():
    points = {p.key: p for p in default_grid().points(reference_b0(), 32)}
    paper = points[(1.2, 1.1, 1.15)]
    assert paper.product == pytest.approx(1.2 * 1.21 * 1.3225)  # 1.92027 by hand, inside 2 ± 0.1
    assert (1.0, 1.0, 1.0) not in points and (1.4, 1.3, 1.3) not in points  # products 1 and 3.31
    # EfficientNet-B2 is the reference B0 at depth 1.2, width 1.1 (and 260 px, not 258): 9,109,994 parameters
    assert paper.params == 9_109_994
    assert paper.proxy_resolution == 37  # round(32 * 1.15 = 36.8)


def test_measured_ratio_of_the_papers_point_is_far_from_two():
    # Rounding (every one-block stage becomes two) makes phi = 1 cost about 2.55x B0
    wide = GridDefinition(
        parse_range("1.2", "a"), parse_range("1.1", "b"), parse_range("1.15", "g"), parse_step(0.05), 0.6, measured=True
    )
    (paper,) = wide.points(reference_b0(), 32)
    assert paper.flops_ratio == pytest.approx(2.55, abs=0.01)
    strict = GridDefinition(wide.alpha, wide.beta, wide.gamma, wide.step, 0.1, measured=True)
    with pytest.raises(Exception, match="holds no point with .measured FLOPs ratio"):
        strict.points(reference_b0(), 32)


# -- twins: what phi = 1 cannot tell apart ------------------------------------------------------------


def independent_networks(phi: int) -> tuple[int, int, int, int]:
    """The default grid on the reference B0 (alpha 1.0-1.4, beta and gamma 1.0-1.3, step 0.05, |product - 2| <=
    0.1; proxy 32 px) enumerated in exact decimals, its points told apart by torchvision's EfficientNet rounding
    (`MBConvConfig.adjust_depth` and `adjust_channels`, the TensorFlow reference's) of the paper's Table 1 and
    the proxy resolution rounded half up: (points, distinct networks, twin groups, points in twin groups)."""
    from torchvision.models.efficientnet import MBConvConfig

    repeats = (1, 2, 2, 3, 3, 4, 1)
    channels = (32, 16, 24, 40, 80, 112, 192, 320, 1280)  # stem, the seven stages, head
    steps = [Decimal("1.0") + Decimal("0.05") * k for k in range(9)]
    networks: Counter = Counter()
    for a in steps:
        for b in steps[:7]:
            for g in steps[:7]:
                if abs(a * b * b * g * g - 2) > Decimal("0.1"):
                    continue
                depth, width = float(a) ** phi, float(b) ** phi
                networks[
                    (
                        tuple(MBConvConfig.adjust_depth(r, depth) for r in repeats),
                        tuple(MBConvConfig.adjust_channels(c, width) for c in channels),
                        int((32 * g**phi).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
                    )
                ] += 1
    groups = [n for n in networks.values() if n > 1]
    return sum(networks.values()), len(networks), len(groups), sum(groups)


@pytest.mark.parametrize("phi, counts", [(1, (38, 22, 47)), (2, (52, 11, 22)), (3, (63, 0, 0))])
def test_the_default_grid_on_b0_holds_38_52_and_63_networks_at_phi_1_2_3(phi, counts):
    assert independent_networks(phi) == (63, *counts)
    points = default_grid(phi).points(reference_b0(), 32)
    groups = twin_groups(points)
    twins = [len(g.points) for g in groups if len(g.points) > 1]
    assert (len(points), len(groups), len(twins), sum(twins)) == (63, *counts)


def test_every_alpha_from_105_to_125_builds_b0s_phi_1_depths_but_not_its_phi_7_ones():
    """Why twins matter: alpha's choice among them decides the family."""
    from effnet.scaling.compound import compound_scale

    b0 = reference_b0()
    for alpha in (1.05, 1.1, 1.15, 1.2, 1.25):
        assert [s.repeats for s in compound_scale(b0, alpha, 1.1, 1.15, 1).stages] == [2, 3, 3, 4, 4, 5, 2]
    assert [s.repeats for s in compound_scale(b0, 1.05, 1.1, 1.15, 7).stages] == [2, 3, 3, 5, 5, 6, 2]
    assert [s.repeats for s in compound_scale(b0, 1.25, 1.1, 1.15, 7).stages] == [5, 10, 10, 15, 15, 20, 5]


def test_twin_groups_their_intervals_and_the_rule_on_the_hand_worked_grid(tiny_base):
    points = tiny_config(tiny_base, Path("unused")).points()
    groups = twin_groups(points)
    assert {g.points[0].key: {p.key for p in g.points} for g in groups} == TINY_NETWORKS
    big = next(g for g in groups if len(g.points) == 3)
    assert [big.interval(c) for c in ("alpha", "beta", "gamma")] == [(1.1, 1.3), (1.0, 1.1), (1.2, 1.2)]
    # products 1.1*1.1²*1.2² = 1.91664, 1.2*1.1²*1.2² = 2.09088, 1.3*1.0²*1.2² = 1.872: the smallest wins
    assert big.chosen.key == (1.3, 1.0, 1.2)
    pair = next(g for g in groups if len(g.points) == 2)
    # 1.1*1.2²*1.1² = 1.91664 against 1.2*1.2²*1.1² = 2.09088
    assert pair.chosen.key == (1.1, 1.2, 1.1) and pair.interval("alpha") == (1.1, 1.2)
    # equal products (1.1*1.1²*1.2² = 1.1*1.2²*1.1²): the smaller alpha, then beta, then gamma
    by_key = {p.key: p for p in points}
    assert choose([by_key[1.1, 1.2, 1.1], by_key[1.1, 1.1, 1.2]]).key == (1.1, 1.1, 1.2)


def test_the_rule_keeps_the_papers_point_from_its_own_twin_group():
    points = default_grid().points(reference_b0(), 32)
    (group,) = [g for g in twin_groups(points) if (1.2, 1.1, 1.15) in {p.key for p in g.points}]
    # alpha 1.2 and 1.25 give B0 the same repeats (above); 1.05-1.15 build them too but miss the band
    # (1.15 * 1.1² * 1.15² = 1.8403 < 1.9); 1.3 (2.0803) is another network: stage 6's 4 * 1.3 = 5.2 -> 6 blocks.
    assert [p.key for p in group.points] == [(1.2, 1.1, 1.15), (1.25, 1.1, 1.15)]
    assert [round(p.product, 4) for p in group.points] == [1.9203, 2.0003]
    assert group.chosen.key == (1.2, 1.1, 1.15)


# -- the study: each network once ---------------------------------------------------------------------


def tiny_config(
    base: Path, run_dir: Path, storage: str | None = None, repeats: int = 1, phi: int = 1, **proxy
) -> GridConfig:
    grid = GridDefinition(
        parse_range("1.1:1.3", "a"),
        parse_range("1.0:1.2", "b"),
        parse_range("1.0:1.2", "g"),
        parse_step(0.1),
        0.15,
        measured=False,
        phi=phi,
    )
    return GridConfig(
        base=load_spec(base),
        grid=grid,
        proxy=ProxyConfig(data="synthetic", resolution=16, **proxy),
        study=StudyConfig(run_dir=run_dir, name="grid", storage=storage),
        repeats=repeats,
    )


class FakeScorer:
    """Scores without training, optionally slowly or interrupted: `score(spec, resolution, seed)` (default
    resolution / 100); records what it scored."""

    def __init__(self, delay: float = 0.0, interrupt_at: int | None = None, score=None):
        self.delay = delay
        self.interrupt_at = interrupt_at
        self.score = score or (lambda spec, resolution, seed: resolution / 100)
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def __call__(self, spec, resolution, seed):
        with self.lock:
            self.calls.append((spec, resolution, seed))
            if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
                raise KeyboardInterrupt
        time.sleep(self.delay)
        return self.score(spec, resolution, seed)

    def networks(self) -> Counter:
        """How often each tiny network (told apart by head width and proxy resolution) was scored with each seed."""
        return Counter((spec.head.out_channels, resolution, seed) for spec, resolution, seed in self.calls)


def prepared(config: GridConfig, scorer=None) -> tuple[GridJob, optuna.Study]:
    """The grid's job and its study with every evaluation queued, as a run prepares it before its workers start."""
    job = GridJob(config, tuple(config.points()), scorer=scorer)
    study, _ = open_study(job, config.study)
    job.prepare(study)
    return job, study


def test_two_racing_workers_score_each_network_once_and_stand_down_on_a_twin(tiny_base, tmp_path):
    config = tiny_config(tiny_base, tmp_path)
    job, study = prepared(config)
    assert points_of(study.get_trials()) == Counter(TINY_NETWORKS.keys())  # one queued trial per network
    # a racing run (or a retry of a twin) leaves a trial for a twin point of a network already queued
    study.enqueue_trial({"alpha": 1.2, "beta": 1.1, "gamma": 1.2}, user_attrs={POINT_ATTR: True})
    scorers = [FakeScorer(delay=0.1), FakeScorer(delay=0.1)]
    workers = [
        threading.Thread(target=run_worker, args=(GridJob(config, job.points, scorer=s), config.study)) for s in scorers
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    trials = study_trials(tmp_path)
    assert points_of(trials, TrialState.COMPLETE) == Counter(TINY_NETWORKS.keys())  # one evaluation per network
    (twin,) = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert twin.state == TrialState.PRUNED and point_of(twin) == (1.2, 1.1, 1.2)
    assert point_of(next(t for t in trials if t.number == twin.user_attrs["duplicate_of"])) == (1.1, 1.1, 1.2)
    assert len(surplus(trials)) <= 1  # the other worker may take a trial as the queue runs dry
    assert sum(len(s.calls) for s in scorers) == 4 and all(s.calls for s in scorers)
    assert queue_missing_evaluations(study, job.points, 1) == 0  # a rerun queues nothing more


def test_an_interrupted_network_is_requeued_and_scored_once_on_resume(tiny_base, tmp_path):
    config = tiny_config(tiny_base, tmp_path)
    job, _ = prepared(config, FakeScorer(interrupt_at=3))
    with pytest.raises(KeyboardInterrupt):
        run_worker(job, config.study)
    interrupted = [t for t in study_trials(tmp_path) if t.state == TrialState.FAIL]
    assert len(interrupted) == 1 and interrupted[0].user_attrs["interrupted"] is True
    resumed = FakeScorer()
    run = run_study(GridJob(config, job.points, scorer=resumed), config.study)
    assert run.stop_reason == "done"
    trials = study_trials(tmp_path)
    assert points_of(trials, TrialState.COMPLETE) == Counter(TINY_NETWORKS.keys())
    assert len(trials) == 5 and len(resumed.calls) == 2  # 4 networks + the interrupted attempt; 2 left to score


def test_a_trial_taken_by_a_worker_that_died_before_naming_itself_is_recovered(tiny_base, tmp_path):
    config = tiny_config(tiny_base, tmp_path)
    job, study = prepared(config, FakeScorer())
    storage = study._storage  # the test plays the dead worker: the trial is taken, never named
    orphan = study.get_trials(states=(TrialState.WAITING,))[0]
    assert storage.set_trial_state_values(orphan._trial_id, TrialState.RUNNING)
    assert recover_stale_trials(storage, study, grace_s=3600) == []  # too recent: its worker may still name it
    assert recover_stale_trials(storage, study, grace_s=0) == [orphan.number]
    assert queue_missing_evaluations(study, job.points, 1) == 0  # the recovery queued its evaluation again
    assert run_worker(job, config.study) == "done"
    assert points_of(study_trials(tmp_path), TrialState.COMPLETE) == Counter(TINY_NETWORKS.keys())


# open_storage's RDB options warn (deprecated retry callback, experimental heartbeats); not this test's subject
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_an_rdb_storage_gets_a_heartbeat_for_every_evaluation(tiny_base, tmp_path):
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'grid.db'}"
    config = tiny_config(tiny_base, tmp_path, storage=url)
    job, _ = prepared(config, FakeScorer())
    assert run_worker(job, config.study) == "done"
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        beats = connection.execute(sqlalchemy.text("select count(distinct trial_id) from trial_heartbeats")).scalar()
    engine.dispose()
    assert beats == 4  # without them a dead worker's trial would stay RUNNING: RDB staleness is by heartbeat


@pytest.mark.parametrize(
    "change, words",
    [({"epochs": 2}, "proxy.epochs: 3 -> 2"), ({"repeats": 3}, "repeats: 1 -> 3"), ({"phi": 2}, "phi: 1 -> 2")],
)
def test_resumed_grid_must_keep_its_settings(tiny_base, tmp_path, change, words):
    prepared(tiny_config(tiny_base, tmp_path))
    with pytest.raises(Exception, match=rf"other settings \({words}\); rerun"):
        prepared(tiny_config(tiny_base, tmp_path, **change))


# -- phi = k ------------------------------------------------------------------------------------------


def test_phi_2_keeps_the_constraint_and_builds_the_phi_2_networks(tmp_path):
    """alpha 1.2 and 1.25 (beta 1.1, gamma 1.15): twins at phi = 1, two networks at phi = 2."""
    from torchvision.models.efficientnet import MBConvConfig

    def grid(phi):
        return GridDefinition.from_ranges("1.2:1.25", "1.1", "1.15", tolerance=0.1, phi=phi)

    config = GridConfig(
        base=reference_b0(),
        grid=grid(2),
        proxy=ProxyConfig(data="synthetic", resolution=16),
        study=StudyConfig(run_dir=tmp_path, name="grid"),
    )
    points = config.points()
    assert (
        [p.key for p in points]
        == [p.key for p in grid(1).points(reference_b0(), 16)]
        == [(1.2, 1.1, 1.15), (1.25, 1.1, 1.15)]
    )  # products 1.9203 and 2.0003: the same band, squared 3.69 and 4.0
    assert len({p.network for p in grid(1).points(reference_b0(), 16)}) == 1
    assert len({p.network for p in points}) == 2
    scorer = FakeScorer()
    job, _ = prepared(config, scorer)
    assert run_worker(job, config.study) == "done"
    built = {spec.provenance["alpha"]: (spec, resolution) for spec, resolution, _ in scorer.calls}
    for alpha, repeats in ((1.2, [2, 3, 3, 5, 5, 6, 2]), (1.25, [2, 4, 4, 5, 5, 7, 2])):
        spec, resolution = built[alpha]
        # repeats ceil(r * alpha²): 1.44 -> (1.44, 2.88, 2.88, 4.32, 4.32, 5.76, 1.44); 1.5625 -> (1.56, 3.13, ...)
        assert [s.repeats for s in spec.stages] == repeats
        assert [s.out_channels for s in spec.stages] == [
            MBConvConfig.adjust_channels(c, 1.1**2) for c in (16, 24, 40, 80, 112, 192, 320)
        ]
        assert resolution == 21  # round(16 * 1.15² = 21.16)
        assert spec.resolution == 296  # round(224 * 1.3225 = 296.24)
        assert spec.provenance["phi"] == 2.0


# -- repeats and the noise ------------------------------------------------------------------------------


def by_network(head: int, resolution: int, seed: int) -> float:
    """A score per network (told apart by head width and proxy resolution) plus seed noise -0.01, 0, +0.01:
    every network's sample standard deviation over seeds 0, 1, 2 is exactly 0.01."""
    base = {(40, 18): 0.80, (32, 19): 0.79, (32, 18): 0.70, (40, 16): 0.60}[head, resolution]
    return base + (seed - 1) * 0.01


def test_repeats_train_each_network_with_k_seeds_and_give_mean_and_std(tiny_base, tmp_path):
    config = tiny_config(tiny_base, tmp_path, repeats=3)
    scorer = FakeScorer(score=lambda spec, resolution, seed: by_network(spec.head.out_channels, resolution, seed))
    job, study = prepared(config, scorer)
    assert run_worker(job, config.study) == "done"
    assert len(scorer.calls) == 12 and set(scorer.networks().values()) == {1}  # 4 networks x seeds 0, 1, 2
    assert {seed for _, _, seed in scorer.calls} == {0, 1, 2}
    results = {n.group.points[0].key: n for n in network_results(study, config, job.points)}
    best = results[(1.1, 1.2, 1.1)]
    assert best.scores == pytest.approx((0.79, 0.80, 0.81)) and best.mean == pytest.approx(0.80)
    assert best.std == pytest.approx(0.01)  # sqrt(((-0.01)² + 0 + 0.01²) / (3 - 1))


@pytest.fixture
def scored_by_network(monkeypatch):
    """The command's proxy replaced by `by_network` (no training): a fake `PointScorer`."""

    def fake(proxy, runtime):
        return lambda spec, resolution, seed: by_network(spec.head.out_channels, resolution, seed)

    monkeypatch.setattr(grid_study, "PointScorer", fake)


def test_a_choice_within_noise_is_said_plainly_and_recorded(tiny_base, tmp_path, scored_by_network):
    result = grid_scale("--base", tiny_base, *GRID_ARGS, *ZERO_COST_ARGS, "--repeats", "3", "--run-dir", tmp_path)
    assert result.exit_code == 0, result.output
    record = yaml.safe_load((tmp_path / "coefficients.yaml").read_text())
    # best: width 1.2 at 18 px (0.80), chosen (1.1, 1.2, 1.1) of its twins; runner-up: width 1.0-1.1 at 19 px
    # (0.79), reported at its own chosen twin (1.3, 1.0, 1.2). Noise 0.01 in every network, so the lead of 0.01 is
    # 1 standard deviation, under two standard errors of a difference of 3-run means, 2 * 0.01 * sqrt(2/3) = 0.0163.
    assert (record["alpha"], record["beta"], record["gamma"]) == (1.1, 1.2, 1.1)
    assert record["score"] == pytest.approx(0.80) and record["score_std"] == pytest.approx(0.01)
    assert record["runner_up"]["alpha"] == 1.3 and record["runner_up"]["score"] == pytest.approx(0.79)
    assert record["noise_sd"] == pytest.approx(0.01) and record["margin_sd"] == pytest.approx(1.0)
    assert record["within_noise"] is True and record["repeats"] == 3
    assert record["twins"]["points"] == [[1.1, 1.2, 1.1], [1.2, 1.2, 1.1]]
    assert record["twins"]["alpha"] == [1.1, 1.2] and record["twins"]["chosen"] == [1.1, 1.2, 1.1]
    assert "within noise" in " ".join(result.output.split())
    rows = {csv_key(r): r for r in read_csv(tmp_path / "grid.csv")}
    assert float(rows[(1.2, 1.2, 1.1)]["score"]) == pytest.approx(0.80)
    assert float(rows[(1.2, 1.2, 1.1)]["score_std"]) == pytest.approx(0.01)
    assert rows[(1.2, 1.2, 1.1)]["scores"].split() == ["0.79", "0.8", "0.81"]
    family = runner.invoke(
        app,
        [
            "export-family",
            "--coefficients",
            str(tmp_path / "coefficients.yaml"),
            "--phi",
            "1",
            "--run-dir",
            str(tmp_path / "family"),
            "--json",
        ],
    )
    assert family.exit_code == 0, family.output
    (warning,) = json.loads(family.stdout)["warnings"]
    assert warning.startswith("the grid's choice is within noise") and "1.00 standard deviations" in warning
    assert "warning: the grid's choice is within noise" in " ".join(family.stderr.split())


def test_a_lead_beyond_noise_is_said_so(tiny_base, tmp_path, monkeypatch):
    def fake(proxy, runtime):
        return lambda spec, resolution, seed: (
            by_network(spec.head.out_channels, resolution, seed)
            + (0.05 if spec.head.out_channels == 40 and resolution == 18 else 0)
        )

    monkeypatch.setattr(grid_study, "PointScorer", fake)
    result = grid_scale(
        "--base", tiny_base, *GRID_ARGS, *ZERO_COST_ARGS, "--repeats", "2", "--run-dir", tmp_path, "--json"
    )
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)["best"]
    # seeds 0 and 1: scores base - 0.01 and base, sample std 0.00707 = 0.01 / sqrt(2) everywhere; lead 0.06
    assert best["noise_sd"] == pytest.approx(0.01 / math.sqrt(2))
    assert best["margin_sd"] == pytest.approx(0.06 * math.sqrt(2) / 0.01)
    assert best["within_noise"] is False


# -- the command ------------------------------------------------------------------------------------


def test_grid_scale_on_the_reference_b0_completes(tmp_path):
    # two points on the paper's alpha and beta: gamma 1.15 (product 1.92) and 1.2 (2.09); 1.1 gives 1.76
    result = grid_scale(
        "--alpha-range",
        "1.2",
        "--beta-range",
        "1.1",
        "--gamma-range",
        "1.1:1.2",
        *ZERO_COST_ARGS,
        "--run-dir",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["points_total"] == summary["points_scored"] == 2 and summary["stop_reason"] == "done"
    assert summary["networks_total"] == summary["evaluations_done"] == 2 and summary["warnings"] == []
    assert sorted(r["gamma"] for r in summary["points"]) == [1.15, 1.2]
    assert sorted(r["proxy_resolution"] for r in summary["points"]) == [18, 19]  # round(16 * 1.15), round(16 * 1.2)
    for point in summary["points"]:  # lists, as JSON has them (grid.csv joins them with spaces)
        assert point["scores"] == [point["score"]] and len(point["trials"]) == len(point["worker"]) == 1
        assert isinstance(point["trials"][0], int)
    assert summary["base"]["name"] == "efficientnet-b0"
    for name in ("coefficients.yaml", "grid.csv", "grid.png", "run.yaml", "study.journal"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.fixture(scope="module")
def resumed_run(tiny_base, tmp_path_factory):
    """A grid stopped after 3 of its 4 networks, then a worker killed mid-network, then resumed to the end."""
    run_dir = tmp_path_factory.mktemp("grid")
    first = grid_scale(
        "--base", tiny_base, *GRID_ARGS, *ZERO_COST_ARGS, "--max-points", "3", "--run-dir", run_dir, "--json"
    )
    assert first.exit_code == 0, first.output
    before = {t.number: (point_of(t), t.value) for t in study_trials(run_dir) if t.state == TrialState.COMPLETE}
    partial = yaml.safe_load((run_dir / "coefficients.yaml").read_text())

    storage = JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    study = optuna.load_study(study_name="grid", storage=storage)
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    assert storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    storage.set_trial_user_attr(waiting._trial_id, WORKER_ATTR, f"{socket.gethostname()}:{dead_pid()}")

    second = grid_scale("--base", tiny_base, *GRID_ARGS, *ZERO_COST_ARGS, "--run-dir", run_dir, "--json")
    assert second.exit_code == 0, second.output
    return {
        "dir": run_dir,
        "first": json.loads(first.stdout),
        "second": json.loads(second.stdout),
        "before": before,
        "killed": waiting.number,
        "partial": partial,
    }


def test_partial_run_stops_at_max_points(resumed_run):
    first = resumed_run["first"]
    assert first["stop_reason"] == "max-points"
    assert (first["evaluations_total"], first["evaluations_done"]) == (4, 3)
    # the first three networks in grid order hold 3 + 2 + 1 points; (1.3, 1.2, 1.0) is left
    assert (first["points_total"], first["points_scored"], first["points_left"]) == (7, 6, 1)
    assert len(resumed_run["before"]) == 3
    assert resumed_run["partial"]["complete"] is False
    (warning,) = first["warnings"]
    assert warning.startswith("the coefficients come from an incomplete grid (3 of 4 evaluations done)")


def test_resume_scores_every_network_once_and_keeps_earlier_scores(resumed_run):
    trials = study_trials(resumed_run["dir"])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert points_of(complete) == Counter(TINY_NETWORKS.keys())  # each network scored exactly once, at its first point
    kept = {t.number: (point_of(t), t.value) for t in complete if t.number in resumed_run["before"]}
    assert kept == resumed_run["before"]  # the first run's networks were not re-run
    killed = next(t for t in trials if t.number == resumed_run["killed"])
    assert killed.state == TrialState.FAIL and "died" in killed.user_attrs["fail_reason"]
    assert len(trials) == 5  # 4 networks + the killed attempt
    second = resumed_run["second"]
    assert second["stop_reason"] == "done" and second["points_scored"] == 7 and second["points_left"] == 0
    assert second["warnings"] == []


def test_grid_csv_shares_each_networks_score_with_its_twins(resumed_run):
    rows = {csv_key(r): r for r in read_csv(resumed_run["dir"] / "grid.csv")}
    assert set(rows) == TINY_POINTS
    for first, twins in TINY_NETWORKS.items():
        assert len({rows[p]["network"] for p in twins}) == 1 and rows[first]["twin_of"] == ""
        assert rows[first]["trials"] and rows[first]["state"] == "complete"
        for twin in twins - {first}:
            assert rows[twin]["twin_of"] == "/".join(f"{v:g}" for v in first)
            assert rows[twin]["score"] == rows[first]["score"] and rows[twin]["trials"] == ""
    assert len({r["network"] for r in rows.values()}) == 4


def test_coefficients_hold_the_chosen_twin_of_the_best_network(resumed_run):
    run_dir = resumed_run["dir"]
    rows = read_csv(run_dir / "grid.csv")
    record = yaml.safe_load((run_dir / "coefficients.yaml").read_text())
    top = max(float(r["score"]) for r in rows)
    assert record["score"] == pytest.approx(top)
    best = [csv_key(r) for r in rows if float(r["score"]) == pytest.approx(top)]
    assert (record["alpha"], record["beta"], record["gamma"]) in best
    group = next(twins for twins in TINY_NETWORKS.values() if set(best) <= twins)
    assert sorted(map(tuple, record["twins"]["points"])) == sorted(group)
    assert record["product"] == pytest.approx(record["alpha"] * record["beta"] ** 2 * record["gamma"] ** 2)
    assert record["product"] == pytest.approx(min(a * b * b * g * g for a, b, g in group))
    assert len(record["points"]) == 7 and record["complete"] is True
    assert sorted(sorted(map(tuple, g["points"])) for g in record["twin_groups"]) == sorted(
        sorted(t) for t in TINY_NETWORKS.values() if len(t) > 1
    )
    assert record["within_noise"] is None  # one run per network: no noise measured
    coefficients = load_coefficients(run_dir / "coefficients.yaml")  # what export-family reads
    assert (coefficients.alpha, coefficients.beta, coefficients.gamma) == (
        record["alpha"],
        record["beta"],
        record["gamma"],
    )
    assert coefficients.caveats == ()


@pytest.mark.slow
def test_two_worker_processes_score_each_network_once(tiny_base, tmp_path):
    result = grid_scale("--base", tiny_base, *GRID_ARGS, *PROXY_ARGS, "--workers", "2", "--run-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    trials = study_trials(tmp_path)
    assert points_of(trials) == Counter(TINY_NETWORKS.keys())  # one trial per network, nothing twice
    assert all(t.state == TrialState.COMPLETE for t in trials if point_of(t) is not None)
    assert len(surplus(trials)) <= 1
    assert len({t.user_attrs[WORKER_ATTR] for t in trials if point_of(t) is not None}) == 2
    assert json.loads(result.stdout)["points_scored"] == 7


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["--alpha-range", "1.0", "--beta-range", "1.0", "--gamma-range", "1.0"],
            ["no point", "1.0:1.0", "--tolerance"],
        ),
        (["--alpha-range", "0.9:1.2"], ["--alpha-range", "at least 1"]),
        (["--beta-range", "abc"], ["--beta-range", "LOW:HIGH"]),
        (["--gamma-range", "1.0:1.1:1.2"], ["--gamma-range", "LOW:HIGH"]),
        (["--alpha-range", "1.4:1.0"], ["--alpha-range", "1.0:1.4"]),
        (["--step", "0"], ["--step", "positive"]),
        (["--tolerance", "-1"], ["--tolerance"]),
        (["--base", "nowhere/b0.yaml"], ["nowhere/b0.yaml", "no such spec file"]),
        (["--max-points", "0"], ["--max-points"]),
        (["--workers", "0"], ["--workers"]),
        (["--phi", "0"], ["--phi", "at least 1"]),
        (["--repeats", "0"], ["--repeats", "at least 1"]),
        # the paper's point costs 2.55x B0 once rounded (see above): outside 2 ± 0.1 when measured
        (
            ["--flops-ratio", "--alpha-range", "1.2", "--beta-range", "1.1", "--gamma-range", "1.15"],
            ["measured FLOPs ratio", "--tolerance"],
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args, words, tmp_path):
    result = grid_scale(*args, "--data", "synthetic", "--run-dir", tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert all(w in result.output for w in words), result.output
    assert not (tmp_path / "study.journal").exists()


def test_a_lead_without_run_to_run_noise_is_printed_as_the_lead_itself():
    """Repeats that all score the same give no noise to measure the lead in: the line gives the lead in score."""
    from effnet.cli.common import console
    from effnet.cli.grid_scale import print_best

    best = {
        "alpha": 1.2, "beta": 1.1, "gamma": 1.15, "product": 1.92, "flops_ratio": 1.93, "score": 0.9875,
        "score_std": 0.0, "twins": {"points": [[1.2, 1.1, 1.15]]}, "tied_with_runner_up": False,
        "runner_up": {"alpha": 1.1, "beta": 1.1, "gamma": 1.2, "score": 0.9844},
        "within_noise": False, "margin_sd": None, "noise_sd": 0.0, "near_chance": False,
    }  # fmt: skip
    with console.capture() as captured:
        print_best({"best": best, "phi": 1.0, "coefficients": "c.yaml", "chance": None, "repeats": 2})
    text = " ".join(captured.get().split())
    assert "by 0.0031 with no run-to-run noise of the proxy" in text and "by nothing" not in text


def test_a_grid_with_max_points_prints_no_optuna_log_line(tmp_path):
    """Its study is opened once before the run to count what was taken: Optuna's own 'A new study created' line
    must not reach stderr there either (a process of its own: Optuna's log handler holds the real stderr)."""
    args = ["grid-scale", "--base", TINY_BASE, *GRID_ARGS, *ZERO_COST_ARGS, "--max-points", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "effnet.cli", *map(str, args), "--run-dir", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "A new study created" not in result.stderr and "[I " not in result.stderr
