"""A trial whose worker is gone, on a database storage: told by its worker's PID where that PID means the same
process here (the same boot and PID namespace), so that a trial cut off by a database outage is found on the next
run rather than a heartbeat's grace period later; never by host name alone, which machines may share."""

from __future__ import annotations

import socket
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from effnet.nas.study.recovery import process_namespace, recover_stale_trials
from effnet.nas.study.storage import open_storage
from effnet.nas.study.trial_attrs import FIXED_PARAMS_SYSTEM_ATTR, RETRY_OF_ATTR, WORKER_ATTR, WORKER_NAMESPACE_ATTR

pytestmark = [
    pytest.mark.skipif(process_namespace() is None, reason="the system names no PID namespace (not Linux)"),
    # open_storage's RDB options warn (deprecated retry callback, experimental heartbeats); not this test's subject
    pytest.mark.filterwarnings(
        "ignore::FutureWarning",
        "ignore::optuna.exceptions.ExperimentalWarning",
        "ignore:Heartbeat of storage is supposed to be used with Study.optimize",  # the test plays the workers
    ),
]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def running_trial(tmp_path, namespace: str | None, pid: int) -> tuple[optuna.Study, object]:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{pid}")
    if namespace is not None:
        trial.set_user_attr(WORKER_NAMESPACE_ATTR, namespace)
    return study, storage


def test_a_dead_workers_trial_in_this_namespace_is_failed_and_queued_again_at_once(tmp_path):
    study, storage = running_trial(tmp_path, process_namespace(), dead_pid())
    assert recover_stale_trials(storage, study, grace_s=3600) == [0]  # no heartbeat grace to wait for
    assert study.trials[0].state == TrialState.FAIL
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[RETRY_OF_ATTR] for t in queued] == [0] and queued[0].system_attrs[
        FIXED_PARAMS_SYSTEM_ATTR
    ] == study.trials[0].params


@pytest.mark.parametrize("namespace", [None, "another-boot/4026531836"], ids=["unnamed", "another-namespace"])
def test_a_trial_from_another_namespace_is_left_to_the_heartbeats(tmp_path, namespace):
    """The same host name and a PID not alive here prove nothing about a process in another PID namespace."""
    study, storage = running_trial(tmp_path, namespace, dead_pid())
    assert recover_stale_trials(storage, study, grace_s=3600) == []
    assert study.trials[0].state == TrialState.RUNNING


def test_a_live_workers_trial_is_left_running(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        study, storage = running_trial(tmp_path, process_namespace(), live.pid)
        assert recover_stale_trials(storage, study, grace_s=3600) == []
    finally:
        live.kill()
        live.wait()
