"""The architecture search: an Optuna study over a search space, one or many workers, resumable.

Each trial samples a spec, counts its FLOPs analytically (and with a latency target predicts its latency from
this machine's latency table, `effnet.nas.latency`) and sets the bands as Optuna constraints before any
training; a candidate outside a band is recorded (so the sampler learns where the bands are) but never trained.
Candidates inside them are scored by the accuracy proxy, reporting per epoch to the pruner. The budget (`trials`)
counts trained candidates only. The study itself (storage, workers, seeds, signals, dead workers) is the study
runner's (`effnet.nas.study.runner`); `search` checks what it can first, runs it and writes the run directory.

The search's parts, lowest first: its settings (`search_config`), its trials read back (`search_trials`) and
its result (`search_result`); one trial (`search_objective`) and the study job (`search_job`); the supernet
trained before the study (`search_supernet`); the run directory's files (`search_files`, `search_report`).
"""

from __future__ import annotations

import dataclasses
import time

from effnet.nas import checks
from effnet.nas.data.facts import check_proxy_resolution, data_facts
from effnet.nas.data.sources import DataSplits, data_record
from effnet.nas.errors import SettingError
from effnet.nas.latency.reach import latency_reach
from effnet.nas.latency.table import LatencyTable, build_table, check_table_settings
from effnet.nas.outputs import holding_run_dirs
from effnet.nas.progress import ProgressCallback
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.supernet_training import CHECKPOINT_FILES
from effnet.nas.record import write_run_record
from effnet.nas.search.config import ACCURACY_PROXIES, SearchConfig
from effnet.nas.search.job import SearchJob
from effnet.nas.search.rescore import Rescoring, ScreeningJob, rescore_top, screening_job
from effnet.nas.search.result import SearchResult
from effnet.nas.search.reward import LatencyBand
from effnet.nas.search.run_dir import SEARCH_FILES, write_search_files
from effnet.nas.search.supernet_stage import train_before_study
from effnet.nas.signals import stops_deferred
from effnet.nas.space.choices import SearchSpace
from effnet.nas.space.fit import DataFit, fit_space
from effnet.nas.space.load import load_space
from effnet.nas.space.reach import check_band, space_reach
from effnet.nas.study.chance import chance_level
from effnet.nas.study.opening import check_settings
from effnet.nas.study.runner import StudyRun, claim_study_dir, run_study


def fitted_space(config: SearchConfig) -> tuple[SearchSpace, DataFit]:
    """The search's space with its base fitted to the data (class count, resolution), checked: the FLOPs band
    reachable and the largest network within the cost limits at that resolution."""
    space = load_space(config.space)
    facts = data_facts(config.proxy.data, config.study.seed)
    if config.classes is not None and config.classes < facts.classes:
        raise SettingError(
            "classes",
            f"is {config.classes}, but the data {facts.source} has {facts.classes} "
            f"classes; give at least {facts.classes} or leave it out",
        )
    check_proxy_resolution(config.proxy.resolution, facts.image_size)
    space, fit = fit_space(space, facts, config.classes, config.resolution)
    band = config.band
    reach = check_band(space, band.low, band.high) if band is not None else space_reach(space)
    problem = reach.largest.problem()
    if problem is not None:
        raise SettingError(
            "resolution",
            f"{fit.resolution} px makes the {space.name} space's largest network {problem}; use a lower resolution",
        )
    return space, fit


def check_search(
    config: SearchConfig, on_progress: ProgressCallback | None = None, notes: list[str] | None = None
) -> tuple[SearchSpace, DataFit, DataSplits, LatencyTable | None]:
    """Everything that can be refused before the study starts (the space fitted to the data, a resumed study's
    settings, the run directory, a latency target no network of the space meets), the latency table of this
    machine for a latency target (built here, once for every worker), and the proxy's data, its caches built
    here once for every worker. A repair of the study's storage, and a latency table measured again, are told
    in `notes`."""
    space, fit = fitted_space(config)
    config.study.worker_device()
    config.study.check_workers()
    if config.latency_band is not None:
        try:
            check_table_settings(config.latency)
        except SettingError as err:  # the search's own threads and device are other settings
            raise SettingError(f"latency_{err.setting}", err.problem) from None
    claim_study_dir(config.study, "search", (*SEARCH_FILES, CHECKPOINT_FILES))
    check_settings(SearchJob(config, space), config.study, notes)
    table = None
    if config.latency_band is not None:
        built = build_table(space, config.latency, config.study.cache_dir, on_progress)
        table = built.table
        if notes is not None:
            notes.extend(built.notes)
        check_latency_band(config.latency_band, space, table)
    return space, fit, load_proxy_data(config.proxy, config.proxy_runtime(), on_progress), table


def rescore_after(
    job: SearchJob, screening: StudyRun, started: float, reserved_s: float | None, on_progress: ProgressCallback | None
) -> Rescoring | None:
    """`--rescore-top`: the screening's top candidates trained again in the time the run has left; None where a
    stop signal ended the screening, or (with a note) where no time is left."""
    if screening.stop_reason == "interrupt":
        return None
    timeout = job.config.study.timeout_s
    left = None if timeout is None else timeout - (time.time() - started)
    if left is not None and left <= 0:
        screening.notes.append("the time limit was spent before the rescoring: b0 is the supernet's pick")
        return None
    return rescore_top(job, screening.study, left, reserved_s, on_progress)


def check_latency_band(band: LatencyBand, space: SearchSpace, table: LatencyTable) -> None:
    """Refuse a latency band no network of the space reaches on this machine, naming the space's range."""
    reach = latency_reach(space, table)
    if band.high < reach.fastest_s or band.low > reach.slowest_s:
        where = f"{table.runtime}, batch {table.batch}, {table.threads} thread(s) on this machine"
        raise SettingError(
            "target_latency",
            f"asks for {1000 * band.low:.2f}–{1000 * band.high:.2f} ms, which no network of the {space.name} space "
            f"meets: the latency table predicts {1000 * reach.fastest_s:.2f}–{1000 * reach.slowest_s:.2f} ms "
            f"({where}) at {space.base.resolution} px; choose a target in that range",
        )


@holding_run_dirs()  # the run directory check_search claims is held to the end
def search(config: SearchConfig, on_progress: ProgressCallback | None = None) -> SearchResult:
    """Run (or resume) the search and write its run directory: `b0.yaml` (the best candidate, its FLOPs
    certified by fvcore), `trials.csv`, plots, `report.html` and `run.yaml` (and for the supernet proxy its
    checkpoint, trained first). Progress reaches `on_progress`; a stop signal ends the run early with what
    completed written (`stop_reason` "interrupt")."""
    checks.instance("config", config, SearchConfig, "a SearchConfig (effnet.SearchConfig(target_flops=...))")
    notes: list[str] = []
    space, fit, data, table = check_search(config, on_progress, notes)
    accuracy = config.proxy.name in ACCURACY_PROXIES  # a chance level means nothing to a zero-cost score
    chance = chance_level(data.val.labels, data.num_classes) if accuracy else None
    job, started = SearchJob(config, space, chance, table=table), time.time()
    reserve: float | None = None
    supernet = train_before_study(job, data, on_progress)  # None but for the supernet proxy
    if supernet is not None and supernet.stopped is not None:
        run = supernet.stopped
    else:
        study = config.study if supernet is None else supernet.study
        screening = job
        if supernet is not None and config.rescore_top:
            screening = screening_job(job, supernet.training, study.timeout_s)
        run = run_study(screening, study, on_progress)
        if isinstance(screening, ScreeningJob):
            reserve = screening.reserve_s(run.study)
    rescoring = rescore_after(job, run, started, reserve, on_progress) if config.rescore_top else None
    run.elapsed_s = time.time() - started  # the supernet's training and the rescoring included
    run.notes[:0] = notes
    with stops_deferred() as stopped:  # the study's work is done: a stop now waits for its files
        result = dataclasses.replace(
            write_search_files(run, config, space, fit, chance, rescoring),
            data=data_record(data),
            supernet=supernet.record() if supernet is not None else None,
        )
        if stopped and result.signal is None:
            result = dataclasses.replace(result, signal=stopped[0])
        write_run_record(config.study.run_dir, "search", {**config.settings(), "data": result.data}, result.as_dict())
    return result
