"""Stage 2, the coefficient grid: score alpha, beta, gamma near alpha*beta^2*gamma^2 = 2 and write the result.

The parts: `grid_space` (the points, the constraint, the network each point builds, the settings), `twins`
(points that build one network, and which of them is reported), `grid_study` (one queued trial per distinct
network and repeat, run by the study runner), `grid_results` (the study read back, the ranking, the verdict
against the proxy's noise, coefficients.yaml). `grid_scale` runs the study and writes grid.csv, grid.png,
report.html, coefficients.yaml and run.yaml.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.nas.data.facts import check_proxy_resolution, data_facts
from effnet.nas.files import dump_yaml, write_csv
from effnet.nas.outputs import holding_run_dirs
from effnet.nas.progress import ProgressCallback
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.record import write_run_record
from effnet.nas.signals import stops_deferred
from effnet.nas.study.chance import ChanceLevel, chance_level
from effnet.nas.study.opening import check_settings, open_study
from effnet.nas.study.optuna_log import optuna_quiet
from effnet.nas.study.proxy_runtime import proxy_runtime
from effnet.nas.study.runner import claim_study_dir, run_study
from effnet.scaling.caveats import grid_caveats
from effnet.scaling.compound import Coefficients
from effnet.scaling.grid_results import (
    CSV_COLUMNS,
    NetworkResult,
    PointResult,
    coefficients_record,
    evaluations_done,
    network_results,
    point_results,
    ranked,
)
from effnet.scaling.grid_space import GridConfig, GridPoint, point_spec
from effnet.scaling.grid_study import GridJob, evaluations_taken
from effnet.scaling.latency import LATENCY_COLUMNS, check_networks_fit, measure_networks

GRID_FILES = ("grid.csv", "grid.png", "coefficients.yaml")
"""The files `grid_scale` writes in the run directory besides a study's own (`STUDY_FILES`)."""


@dataclass(frozen=True)
class GridResult:
    """What `grid_scale` found and wrote: every distinct network's result and every point's row (grid order),
    the chosen coefficients (None until a network is scored; their `caveats` say what speaks against them),
    whether the grid is complete, and the files."""

    config: GridConfig
    networks: list[NetworkResult]
    points: list[PointResult]
    coefficients: Coefficients | None
    record: dict[str, Any] | None
    """What coefficients.yaml holds (None until a network is scored)."""
    stop_reason: str
    """done, max-points, timeout, interrupt, or workers ended."""
    signal: int | None
    elapsed_s: float
    files: dict[str, Path] = field(default_factory=dict)
    data: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per proxy resolution, what the proxy trained on (split sizes, files left out)."""
    notes: list[str] = field(default_factory=list)
    """What the user should know about the run (`StudyRun.notes`): a repaired journal, a failed worker, a base
    whose class count is not the data's."""
    chance: ChanceLevel | None = None
    """The train proxy's chance level on its validation split (None for the other proxies)."""
    threads: dict[str, Any] | None = None
    """CPU threads per worker and why (`ThreadChoice.record`)."""

    @property
    def ranked(self) -> list[NetworkResult]:
        return ranked(self.networks)

    @property
    def complete(self) -> bool:
        return all(n.state in ("complete", "failed") for n in self.networks)

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        counts = {
            state: sum(r.network.state == state for r in self.points)
            for state in ("complete", "failed", "running", "pending")
        }
        data: dict[str, Any] = {
            "run_dir": str(c.study.run_dir),
            "study": c.study.name,
            "storage": c.study.storage_label,
            "stop_reason": self.stop_reason,
            "elapsed_s": round(self.elapsed_s, 1),
            "base": {"path": self.record["base"]["path"] if self.record else None, "name": c.base.name},
            "grid": c.grid.describe(),
            "proxy": c.proxy_settings(),
            "phi": c.grid.phi,
            "repeats": c.repeats,
            "points_total": len(self.points),
            "points_scored": counts["complete"],
            "points_failed": counts["failed"],
            "points_left": counts["running"] + counts["pending"],
            "networks_total": len(self.networks),
            "networks_scored": len(self.ranked),
            "evaluations_total": len(self.networks) * c.repeats,
            "evaluations_done": evaluations_done(self.networks),
            "twin_groups": [n.group.record() for n in self.networks if len(n.group.points) > 1],
            "best": None,
            "coefficients": None,
            "warnings": list(self.coefficients.caveats) if self.coefficients else [],
            "files": {
                "grid_csv": str(self.files["grid_csv"]),
                "plot": str(self.files["plot"]),
                "report": str(self.files["report"]),
                "run": str(self.files["run_record"]),
            },
            "points": [r.record() for r in self.points],
            "data": self.data,
            "notes": self.notes,
            "classes": c.base.num_classes,
            "chance": self.chance.record() if self.chance is not None else None,
            "threads": self.threads,
            "latency": c.latency.record() if c.latency is not None else None,
        }
        if self.record is not None:
            data["best"] = {
                k: self.record[k]
                for k in (
                    "alpha",
                    "beta",
                    "gamma",
                    "score",
                    "score_std",
                    "product",
                    "flops_ratio",
                    "network",
                    "twins",
                    "runner_up",
                    "noise_sd",
                    "margin_sd",
                    "within_noise",
                    "tied_with_runner_up",
                    "tie_rule",
                    "near_chance",
                )
            }
            if c.latency is not None:
                data["best"]["latency_ms"] = self.record.get("latency_ms")
            data["coefficients"] = str(self.files["coefficients"])
        return data


def check_grid(
    config: GridConfig, on_progress: ProgressCallback | None = None, notes: list[str] | None = None
) -> tuple[list[GridPoint], dict, ChanceLevel | None]:
    """Everything that can be refused before the study starts (the grid's points, the data, the directory),
    and the proxy's data at every resolution the points train at, its caches built here once for every
    worker; returns the points, what the run record says of the data, and the train proxy's chance level (the
    validation split is the same at every resolution). A resumed study's settings are checked before the data
    are decoded; a repair of its storage is told in `notes`."""
    from effnet.nas.data.sources import data_record

    points = config.points()
    check_proxy_resolution(config.proxy.resolution, data_facts(config.proxy.data, config.study.seed).image_size)
    if config.latency is not None:  # timed after every evaluation: a network too large is refused before them
        check_networks_fit([point_spec(config.base, *p.key, config.grid.phi) for p in points], config.latency)
    config.study.worker_device()
    config.study.check_workers()
    claim_study_dir(config.study, "grid-scale", GRID_FILES)
    check_settings(GridJob(config, tuple(points)), config.study, notes)
    runtime = proxy_runtime(config.study)
    records, chance = {}, None
    for resolution in sorted({p.proxy_resolution for p in points}):
        data = load_proxy_data(dataclasses.replace(config.proxy, resolution=resolution), runtime, on_progress)
        records[resolution] = data_record(data)
        if config.proxy.name == "train":
            chance = chance_level(data.val.labels, data.num_classes)
    return points, records, chance


def class_note(config: GridConfig, data: dict[int, dict[str, Any]]) -> list[str]:
    """A note when the base's class count is not the data's: the points are counted for the base's classifier."""
    classes = {record["classes"] for record in data.values()}
    if not classes or config.base.num_classes in classes:
        return []
    found = classes.pop()
    return [
        f"the base {config.base.name} has {config.base.num_classes} classes and the data {found}: every point's "
        f"parameters and FLOPs are counted for a {config.base.num_classes}-way classifier; --classes {found} "
        "fits them to the data"
    ]


def with_latency(
    networks: list[NetworkResult], config: GridConfig, on_progress: ProgressCallback | None
) -> list[NetworkResult]:
    """The networks with their latency measured (`config.latency`), or as they are without it."""
    if config.latency is None:
        return networks
    phi = config.grid.phi
    specs = {n.network: point_spec(config.base, *n.chosen.key, phi) for n in networks}
    measured = measure_networks(specs, config.latency, on_progress)
    return [dataclasses.replace(n, latency=measured[n.network]) for n in networks]


@holding_run_dirs()  # the run directory check_grid claims is held to the end
def grid_scale(
    config: GridConfig, base_label: str = "<spec>", on_progress: ProgressCallback | None = None
) -> GridResult:
    """Score the grid's distinct networks (resuming the study in the run directory), each `config.repeats`
    times, and write grid.csv, grid.png, report.html, coefficients.yaml (once a network is scored) and run.yaml.
    `base_label` is how the files name the base (its path, say). A stop signal ends the run early with what
    was scored written. With `config.latency`, each distinct network's latency is measured once the study
    stops (`on_progress` hears each) and goes into the rows and files."""
    notes: list[str] = []
    checked, data, chance = check_grid(config, on_progress, notes)
    points = tuple(checked)
    job = GridJob(config, points)
    if config.max_points is not None:
        with optuna_quiet():  # Optuna's own "A new study created" line is not effnet's output
            study, _ = open_study(job, config.study)
        job = dataclasses.replace(job, limit=evaluations_taken(study, job.network_of) + config.max_points)
    run = run_study(job, config.study, on_progress)
    run.notes[:0] = notes
    networks = network_results(run.study, config, points)
    if run.signal is None:  # stopped by a signal: the files are written at once, without the latency
        networks = with_latency(networks, config, on_progress)
    with stops_deferred() as stopped:  # the study's work is done: a stop now waits for its files
        rows = point_results(networks, points)
        run_dir = config.study.run_dir
        columns = CSV_COLUMNS + (LATENCY_COLUMNS if config.latency is not None else ())
        files = {"grid_csv": write_csv(run_dir / "grid.csv", columns, (r.row() for r in rows))}
        from effnet.scaling.plots import plot_grid

        files["plot"] = plot_grid(
            rows,
            config.grid,
            run_dir / "grid.png",
            f"{config.base.name}: grid at φ = {config.grid.phi}, {config.proxy.name} proxy on {config.proxy.data}",
            config.score_name,
            chance,
        )
        provenance = {
            "command": "effnet grid-scale",
            "study": config.study.name,
            "storage": config.study.storage_label,
            "run_dir": str(run_dir),
        }
        record = coefficients_record(config, networks, rows, base_label, provenance, chance)
        coefficients = None
        if record is not None:
            files["coefficients"] = dump_yaml(record, run_dir / "coefficients.yaml")
            coefficients = Coefficients(record["alpha"], record["beta"], record["gamma"], caveats=grid_caveats(record))
        from effnet.nas.study.html_report import REPORT_NAME
        from effnet.scaling.grid_report import write_grid_report

        files["report"] = write_grid_report(run.study, config, rows, record, run_dir / REPORT_NAME, chance)
        files["run_record"] = run_dir / "run.yaml"
        result = GridResult(
            config=config,
            networks=networks,
            points=rows,
            coefficients=coefficients,
            record=record,
            stop_reason=run.stop_reason,
            signal=run.signal if run.signal is not None else (stopped[0] if stopped else None),
            elapsed_s=run.elapsed_s,
            files=files,
            data=data,
            notes=run.notes + class_note(config, data),
            chance=chance,
            threads=run.threads.record() if run.threads is not None else None,
        )
        summary = {k: v for k, v in result.as_dict().items() if k != "points"}
        write_run_record(run_dir, "grid-scale", config.settings(base_label), summary)
    return result
