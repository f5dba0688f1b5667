"""The supernet proxy's place in a search: one training in this process before any worker starts.

The study's workers, and every later run of the study, load the trained supernet from its checkpoint in the
run directory. Its training counts in the run's time limit (`timeout_s`), not in its trials: the study gets
the time it leaves. A training cut short by the time limit or a stop signal keeps its checkpoint, and the run
ends with the trials it has, as a study stopped at that moment would; the same command resumes the training.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from effnet.nas.data.sources import DataSplits
from effnet.nas.progress import ProgressCallback
from effnet.nas.proxies.supernet_training import SupernetTraining, train_supernet
from effnet.nas.search.job import SearchJob
from effnet.nas.search.trial import supernet_setup
from effnet.nas.study.opening import open_study
from effnet.nas.study.optuna_log import optuna_quiet
from effnet.nas.study.runner import StudyRun
from effnet.nas.study.study_config import StudyConfig


@dataclass(frozen=True)
class SupernetStage:
    """The supernet's training before a study: how it went, the study's settings with the time it leaves, and
    the run to report instead of the study's where it stopped the run."""

    training: SupernetTraining
    study: StudyConfig
    stopped: StudyRun | None

    def record(self) -> dict[str, Any]:
        t = self.training
        return {
            "checkpoint": str(t.path),
            "steps": t.steps,
            "total_steps": t.total_steps,
            "training_s": round(t.seconds, 1),
            "trained_now_s": round(t.seconds_now, 1),
        }


def train_before_study(job: SearchJob, data: DataSplits, on_progress: ProgressCallback | None) -> SupernetStage | None:
    """Train (or resume, or find) the search's supernet, within the run's time limit; None for other proxies."""
    setup = supernet_setup(job.config, job.space)
    if setup is None:
        return None
    study = job.config.study
    started = time.time()
    deadline = None if study.timeout_s is None else started + study.timeout_s
    runtime = job.config.proxy_runtime(study.worker_device(), study.thread_choice().threads)
    training = train_supernet(setup, job.config.proxy, data, runtime, deadline, on_progress)
    left = None if deadline is None else deadline - time.time()
    reason = training.stopped or ("timeout" if left is not None and left <= 0 else None)
    if reason is None:
        return SupernetStage(training, dataclasses.replace(study, timeout_s=left), None)
    with optuna_quiet():
        opened, _ = open_study(job, study)
    return SupernetStage(
        training,
        study,
        StudyRun(study=opened, stop_reason=reason, elapsed_s=time.time() - started, signal=training.signal),
    )
