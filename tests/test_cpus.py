"""CPU threads chosen from the cores other work leaves free, OpenMP's bounded spin, the choice recorded, and the
`slow` mark of trials.csv."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import effnet
from effnet.nas import cpus
from effnet.nas.cpus import (
    CpuState,
    cgroup_quota,
    choose_threads,
    configure_openmp,
    cpu_times,
    openmp_env,
    usable_cores,
)
from effnet.nas.search.run_dir import slow_trials

TINY_SPACE = str(Path(__file__).parent / "data" / "tiny_space.yaml")


@pytest.mark.parametrize(
    "state, workers, threads",
    [
        (CpuState(affinity=2, busy=0.1, load=0.3), 1, 2),  # quiet: one per core
        (CpuState(affinity=2, busy=1.9, load=4.1), 1, 1),  # the shared machine: both cores busy
        (CpuState(affinity=2, busy=0.5), 1, 2),  # 1.5 free: half a core counts
        (CpuState(affinity=2, busy=0.6), 1, 1),  # 1.4 free
        (CpuState(affinity=2, busy=2.0), 1, 1),  # nothing free: still one thread
        (CpuState(affinity=8, quota=2.0, busy=0.0), 1, 2),  # the cgroup quota caps 8 CPUs at 2 cores
        (CpuState(affinity=8, quota=2.0, busy=7.0), 1, 1),  # ... and busy CPUs cut below it
        (CpuState(affinity=8, busy=3.0), 2, 2),  # 5 free cores, 2 workers: 2 each, not 3 (6 > 5)
        (CpuState(affinity=8, busy=0.0), 3, 2),  # 8 // 3
        (CpuState(affinity=2, load=3.0), 1, 1),  # no sample: the load average stands in
        (CpuState(affinity=4), 1, 4),  # nothing known of other work: every core
    ],
)
def test_threads_come_from_the_free_cores(state, workers, threads):
    assert choose_threads(state, workers).threads == threads


def test_the_reason_names_what_decided():
    assert choose_threads(CpuState(affinity=2, busy=1.9, load=4.1)).reason == "0.1 of 2 cores free (load 4.1): 1 thread"
    quiet = choose_threads(CpuState(affinity=2, busy=0.0, load=0.2)).reason
    assert quiet == "2.0 of 2 cores free (load 0.2): 2 threads"
    quota = choose_threads(CpuState(affinity=8, quota=1.5, busy=0.0), workers=2).reason
    assert quota == "1.0 of 1 core (cgroup quota 1.5 of 8 CPUs) free, 2 workers: 1 thread each"


@pytest.mark.parametrize(
    "files, cores",
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({}, None),
    ],
)
def test_cgroup_quota_v2_and_v1(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_quota(tmp_path) == cores


def test_cpu_times_count_the_cpus_of_the_affinity_mask_and_not_idle_or_iowait(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  900 0 90 900 9 0 0 0 0 0\n"
        "cpu0 100 5 20 300 4 1 2 3 0 0\n"  # busy 100+5+20+1+2+3 = 131 of 435
        "cpu1 800 0 70 600 5 0 0 0 0 0\n"  # busy 870 of 1475
        "intr 12345 1 2\nctxt 999\n"
    )
    assert cpu_times({0}, stat) == (131.0, 435.0)
    assert cpu_times({0, 1}, stat) == (1001.0, 1910.0)
    assert cpu_times({5}, stat) is None
    assert cpu_times({0}, tmp_path / "missing") is None


def test_usable_cores_is_the_affinity_capped_by_whole_cores_of_quota():
    assert usable_cores(affinity=8, quota=1.5) == 1
    assert usable_cores(affinity=8, quota=0.5) == 1
    assert usable_cores(affinity=2, quota=4.0) == 2
    assert usable_cores(affinity=2) == 2


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask on this platform")
def test_this_process_counts_the_cpus_of_its_affinity_mask_capped_by_its_quota():
    mask = os.sched_getaffinity(0)
    assert cpus.cpu_ids() == mask
    quota = cgroup_quota()
    assert usable_cores() == (len(mask) if quota is None else max(1, min(len(mask), int(quota + 1e-9))))


def test_the_spin_is_bounded_unless_the_environment_sets_the_wait(monkeypatch):
    monkeypatch.delenv(cpus.SPIN_ENV, raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with openmp_env():
        assert os.environ[cpus.SPIN_ENV] == cpus.SPIN_COUNT
    assert cpus.SPIN_ENV not in os.environ  # the library leaves the environment as it found it
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert "from the environment" in configure_openmp()
    with openmp_env():
        assert cpus.SPIN_ENV not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    configure_openmp()  # the command line's own process: set for good (monkeypatch restores it here)
    assert os.environ[cpus.SPIN_ENV] == cpus.SPIN_COUNT


def test_a_search_records_the_choice_and_gives_torch_its_threads_back(tmp_path, monkeypatch):
    """Both cores busy: one thread for the run, recorded with its reason; torch's own count afterwards."""
    monkeypatch.setattr("effnet.nas.study.study_config.cpu_state", lambda: CpuState(affinity=2, busy=1.8, load=4.0))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = effnet.search(
            effnet.SearchConfig(
                target_flops=1_000_000,
                flops_tolerance=0.3,
                space=TINY_SPACE,
                trials=1,
                proxy=effnet.ProxyConfig(data="synthetic", epochs=1, resolution=16, batch_size=16),
                study=effnet.StudyConfig(run_dir=tmp_path, name="search"),
            )
        )
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    expected = {"threads": 1, "reason": "0.2 of 2 cores free (load 4.0): 1 thread"}
    assert result.threads == expected
    assert yaml.safe_load((tmp_path / "run.yaml").read_text())["result"]["threads"] == expected
    with open(tmp_path / "trials.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["epochs_trained"]]
    assert rows and all(r["epochs_trained"] == "1" and r["slow"] == "False" for r in rows)


@pytest.mark.parametrize("command", ["search", "grid-scale", "proxy-check", "describe"])
def test_more_threads_than_the_usable_cores_are_refused_by_every_command_that_takes_them(command, monkeypatch):
    """`search --threads 1000` on 2 cores was taken as set: no candidate finished in 3 minutes and the run overran
    its time limit. Every --threads is now held to the cores this process may use, with the most it may take."""
    from typer.testing import CliRunner

    from effnet.cli.app import app

    monkeypatch.setattr(cpus, "usable_cores", lambda: 3)
    extra = {"describe": [str(Path(__file__).parent / "data" / "tiny_base.yaml"), "--latency"]}.get(command, [])
    result = CliRunner().invoke(app, [command, *extra, "--threads", "4"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: --threads 4 is more than the 3 cores this process may use (more threads than cores wait on each "
        "other); use at most 3"
    )


def test_a_study_config_takes_threads_up_to_the_usable_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(cpus, "usable_cores", lambda: 3)
    with pytest.raises(effnet.SettingError, match="^threads 4 is more than the 3 cores"):
        effnet.StudyConfig(run_dir=tmp_path, name="s", threads=4)
    assert effnet.StudyConfig(run_dir=tmp_path, name="s", threads=3).threads == 3


def test_slow_marks_seconds_per_flop_and_epoch_over_three_times_the_median():
    timings = {
        0: (1.0, 10**6, 1),
        1: (2.0, 10**6, 2),
        2: (1.1, 10**6, 1),  # 1e-6 s per FLOP-epoch, about
        3: (3.5, 10**6, 1),  # 3.5e-6: over 3 x the median (1.05e-6)
        4: (3.5, 4 * 10**6, 1),  # as long, but four times the FLOPs: not slow
        5: (3.0, 10**6, 1),
    }  # 3.0e-6: under 3 x the median
    assert slow_trials(timings) == {3}
    assert slow_trials({0: (1.0, 10**6, 1), 1: (9.0, 10**6, 1)}) == set()  # two are too few to judge
    assert slow_trials({0: (1.0, 10**6, 1), 1: (1.0, 10**6, 1), 2: (9.0, 10**6, 0)}) == set()  # no epoch: unjudged


@pytest.mark.slow
@pytest.mark.parametrize("preset, expected", [({}, cpus.SPIN_COUNT), ({"OMP_WAIT_POLICY": "PASSIVE"}, "None")])
def test_the_entry_point_bounds_the_spin_before_any_command_loads_torch(preset, expected):
    probe = (
        "import os, sys\nfrom effnet.cli.app import main\nsys.argv = ['effnet', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, os.environ.get('GOMP_SPINCOUNT'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in (cpus.SPIN_ENV, "OMP_WAIT_POLICY")}
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**env, **preset}, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == f"False {expected}"
