"""What a search found and wrote: its best candidates, the certified best spec, the trial counts, the run
directory's files, and the summary the command prints (`--json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effnet.nas.net.spec import NetworkSpec
from effnet.nas.proxies.names import ZERO_COST_FLOOR
from effnet.nas.search.config import ACCURACY_PROXIES, SearchConfig
from effnet.nas.search.trials import StudySummary
from effnet.nas.space.fit import DataFit
from effnet.nas.study.chance import ChanceLevel


def search_warnings(proxy: str, best: float | None, chance: ChanceLevel | None) -> list[str]:
    """What speaks against a search's result, whose best candidate scored `best` by `proxy`: that accuracy within
    the margin of chance, classes with no validation image, or a training-free score at the floor every
    degenerate network gets. The terminal, `--json`, run.yaml's readers and report.html show the same sentences."""
    if best is not None and proxy not in ACCURACY_PROXIES and best <= 2 * ZERO_COST_FLOOR:
        return [
            f"the best candidate's {proxy} score is the floor of a degenerate network "
            f"({best:.3g}; a singular NASWOT kernel: identical images in the scoring batch, say), so the scores "
            "rank nothing; check the data for duplicates, or use --proxy train"
        ]
    if chance is None:
        return []
    unseen = chance.unseen_warning()
    near = [chance.warning(best)] if best is not None and chance.near(best) else []
    return near + ([unseen] if unseen else [])


@dataclass(frozen=True)
class Candidate:
    """One trained candidate as the result lists it."""

    trial: int
    reward: float | None
    accuracy: float | None
    flops: int
    params: int
    latency_s: float | None
    """The latency the table predicts (a search with a latency target), None otherwise."""
    architecture: str
    on_front: bool = False
    """On the Pareto front of accuracy against the cost the search weighs (no trained candidate is better on both)."""


@dataclass(frozen=True)
class SearchResult:
    """What `search` found and wrote: the certified best spec (None if no candidate in the band finished
    training yet), the best candidates, the trial counts and the files of the run directory."""

    config: SearchConfig
    best_spec: NetworkSpec | None
    best_flops: int | None
    """The best spec's FLOPs by fvcore (the certification), None without a best spec."""
    top: list[Candidate]
    summary: StudySummary
    stop_reason: str
    """budget, band (too many samples outside it), timeout, interrupt, or workers ended."""
    signal: int | None
    elapsed_s: float
    files: dict[str, Path] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """What the proxy trained on: split sizes, and the files left out because they do not decode."""
    notes: list[str] = field(default_factory=list)
    """What the user should know about the run (`StudyRun.notes`): a repaired journal, a failed worker."""
    supernet: dict[str, Any] | None = None
    """The supernet proxy's training: its checkpoint, steps done of all, seconds in all and in this run."""
    fit: DataFit | None = None
    """The class count and resolution the networks were fitted to, and where each came from."""
    chance: ChanceLevel | None = None
    """The proxy's chance level on its validation split (None for the zero-cost scores, which are no accuracy)."""

    threads: dict[str, Any] | None = None
    """CPU threads per worker and why (`ThreadChoice.record`); None when the run trained nothing."""
    latency: dict[str, Any] | None = None
    """With a latency target: the best spec's predicted latency and its end-to-end measurement (median, p90, cv,
    runtime, device, batch, threads), as b0.yaml's provenance holds them; None otherwise."""
    rescored: dict[str, Any] | None = None
    """`--rescore-top`: the candidates trained again, how many finished, and the best (`Rescoring.record`)."""

    @property
    def warnings(self) -> list[str]:
        """What speaks against the result (`search_warnings` for the best candidate)."""
        best = self.top[0].accuracy if self.top else None
        return search_warnings(self.config.proxy.name, best, self.chance)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (the command's `--json`)."""
        c, s = self.config, self.summary
        data: dict[str, Any] = {
            "run_dir": str(c.study.run_dir),
            "study": c.study.name,
            "storage": c.study.storage_label,
            "stop_reason": self.stop_reason,
            "elapsed_s": round(self.elapsed_s, 1),
            "target_flops": c.target_flops,
            "band": [c.band.low, c.band.high] if c.band is not None else None,
            **(
                {"target_latency_s": c.target_latency_s, "latency_band_s": [c.latency_band.low, c.latency_band.high]}
                if c.latency_band is not None
                else {}
            ),
            "trials_completed": s.completed,
            "trials_pruned": s.pruned,
            "trials_failed": s.failed,
            "trials_outside_band": s.outside_band,
            "trials_csv": str(self.files["trials_csv"]),
            "plots": [str(self.files["history_plot"]), str(self.files["accuracy_plot"])],
            "report": str(self.files["report"]),
            "best_spec": None,
            "data": self.data,
            "notes": self.notes,
            "supernet": self.supernet,
            "classes": self.fit.classes if self.fit else None,
            "resolution": self.fit.resolution if self.fit else None,
            "fit": self.fit.record() if self.fit else None,
            "chance": self.chance.record() if self.chance else None,
            "warnings": self.warnings,
            "threads": self.threads,
            "rescored": {**self.rescored, "csv": str(self.files["rescored_csv"])} if self.rescored else None,
        }
        if self.best_spec is not None:
            best = self.top[0]
            data.update(
                {
                    "best_spec": str(self.files["best_spec"]),
                    "trial": best.trial,
                    "flops": self.best_flops,
                    "params": best.params,
                    "accuracy": best.accuracy,
                    "reward": best.reward,
                    "architecture": self.best_spec.summary,
                }
            )
            if self.latency is not None:
                data["latency"] = self.latency
        return data
