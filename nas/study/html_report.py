"""report.html: a study's figures as one page, and the Optuna figures search and grid share: the optimization
history and the parameter importances. plotly.js (some megabytes) is not inside the page but beside it, one
`plotly.min.js` per run directory that the page loads by its relative path: the page opens without a network and
weighs tens of kilobytes.

Optuna's plots read a study; the figures here are drawn from an in-memory study holding only the trials that
were scored, each with the score the report is about (a search's reward, a grid's mean proxy score), so the
history and the importances are those of the scores and not of the placeholder values Optuna records for the
candidates outside the FLOPs band.
"""

from __future__ import annotations

import html
import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from effnet.nas.files import atomic_write_text
from effnet.nas.study.optuna_log import optuna_quiet
from effnet.nas.study.trial_attrs import SOURCE_TRIAL_ATTR

REPORT_NAME = "report.html"
PLOTLY_JS_NAME = "plotly.min.js"
SAME_SCORE = 1e-9
"""Scores whose spread is at most this share of the largest are the same score to fANOVA's forest."""
MIN_TRIALS_FOR_IMPORTANCE = 3
"""fANOVA fits a random forest over the scored trials: below three it has nothing to split."""


@dataclass(frozen=True)
class Section:
    """One figure of the report, with a line on what it shows, or a note saying why it is missing."""

    title: str
    caption: str
    figure: Any = None
    """A plotly Figure, or None when there was not enough to draw (the caption says why)."""


class _SharedTrialsStudy(optuna.Study):
    """A study whose `trials` are the stored trials themselves rather than deep copies. Optuna's figures read
    `study.trials`, and the importances' hover text reads it once per parameter: with deep copies, report.html
    of a search of 1,500 trials and 42 choices took over a minute. The figures only read them."""

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials(deepcopy=False)


def scored_study(
    trials: Sequence[FrozenTrial], score: Callable[[FrozenTrial], float | None], name: str
) -> optuna.Study:
    """An in-memory single-objective study of `trials` with `score` as each one's value (trials it gives None or
    a non-finite score are left out), in the original order."""
    storage = optuna.storages.InMemoryStorage()
    with optuna_quiet():
        optuna.create_study(storage=storage, direction="maximize", study_name=name)
    study = _SharedTrialsStudy(study_name=name, storage=storage)
    for trial in trials:
        value = score(trial)
        if value is None or not math.isfinite(value):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=trial.params,
                distributions=trial.distributions,
                value=value,
                user_attrs={SOURCE_TRIAL_ATTR: trial.number},
            )
        )
    return study


def dashboard_command(storage: str | None, run_dir: Path) -> str:
    """The optuna-dashboard command that watches the study live: the journal's path, or the storage URL (its
    password redacted: the reader puts it back)."""
    from effnet.nas.redact import redact_url
    from effnet.nas.study.storage import JOURNAL_NAME

    if storage is None:
        return f"optuna-dashboard {run_dir / JOURNAL_NAME}"
    return f"optuna-dashboard {redact_url(storage.removeprefix('journal:'))}"


def history_section(study: optuna.Study, score_name: str, what: str) -> Section:
    from optuna.visualization import plot_optimization_history

    scored = len(study.get_trials(deepcopy=False))
    if not scored:
        return Section("Optimization history", f"no {what} scored yet")
    figure = plot_optimization_history(study, target_name=score_name)
    figure.update_layout(xaxis_title=f"{what} (in the order scored)")
    figure.update_xaxes(tick0=0, dtick=whole_step(scored))
    return Section(
        "Optimization history", f"{score_name} of every {what} in the order scored, and the best so far.", figure
    )


def importance_section(study: optuna.Study, score_name: str, what: str) -> Section:
    """fANOVA importances (Optuna's default evaluator, seeded) of the parameters every scored trial has."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import plot_param_importances

    title = "Parameter importances"
    trials = study.get_trials(deepcopy=False)
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE:
        return Section(title, f"needs {MIN_TRIALS_FOR_IMPORTANCE} scored {what}s or more; {len(trials)} so far")
    varied = [
        name
        for name in trials[0].params
        if all(name in t.params for t in trials) and len({t.params[name] for t in trials}) > 1
    ]
    if not varied:
        return Section(title, f"every scored {what} has the same choices: nothing to compare")
    same = Section(title, f"every scored {what} has the same {score_name}: no choice explains any of it")
    values = [float(t.value) for t in trials if t.value is not None]
    if not values or max(values) - min(values) <= SAME_SCORE * max(abs(v) for v in values):  # fANOVA: / variance
        return same
    try:
        figure = plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), params=varied, target_name=score_name
        )
    except RuntimeError as err:  # scores apart by float rounding only: each tree sees no variance
        if "zero total variance" not in str(err):
            raise
        return same
    # every bar named: plotly skips category labels where the bars are thinner than a line of text
    figure.update_yaxes(tickmode="linear", dtick=1)
    figure.update_layout(height=max(400, 160 + 24 * len(varied)))
    return Section(
        title,
        f"How much of the variance of {score_name} each choice explains (fANOVA over the "
        f"{len(trials)} scored {what}s; a forest fit to few points, so read it as a hint).",
        figure,
    )


def whole_step(count: int) -> int:
    """A tick step in whole numbers (1, 2, 5, 10, 20, ...) that puts at most about ten ticks on `count` trials."""
    for power in itertools.count():
        for base in (1, 2, 5):
            if count <= 10 * base * 10**power:
                return base * 10**power
    raise AssertionError("unreachable")


def write_report(path: str | os.PathLike[str], title: str, lines: Sequence[str], sections: Sequence[Section]) -> Path:
    """One HTML page: the title, a few lines of context, then each section's figure; plotly.js is loaded from
    `plotly.min.js` beside the page (written there if it is missing or another version), so the page opens
    anywhere without a network."""
    path = Path(path)
    body, loaded = [], False
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>\n<p>{html.escape(section.caption)}</p>")
        if section.figure is not None:
            body.append(
                section.figure.to_html(
                    full_html=False, include_plotlyjs=False if loaded else PLOTLY_JS_NAME, config={"displaylogo": False}
                )
            )
            loaded = True
    if loaded:
        write_plotly_js(path.parent / PLOTLY_JS_NAME)
    context = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "h2{margin-top:2em}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1><ul>{context}</ul>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    return atomic_write_text(path, page)


def write_plotly_js(path: Path) -> Path:
    """The plotly.js the installed plotly draws with, written unless the file already holds exactly it."""
    from plotly.offline import get_plotlyjs

    script = get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(script.encode()) or path.read_text() != script:
        atomic_write_text(path, script)
    return path
