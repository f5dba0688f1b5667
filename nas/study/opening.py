"""A job's study opened in its storage: created, or loaded when the settings it was created with (its fingerprint,
every setting that changes a score) are the job's; one created with other settings is refused, naming each."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.storages import BaseStorage

from effnet.nas.errors import InputError
from effnet.nas.study.storage import JOURNAL_PREFIX, journal_path, open_storage
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.study.study_job import StudyJob
from effnet.nas.study.worker_seeds import SeededPerWorker


def open_study(job: StudyJob, config: StudyConfig, notes: list[str] | None = None) -> tuple[optuna.Study, BaseStorage]:
    """Create or load the job's study; one created with other settings is refused. Returns the study and
    the storage object behind it; a repair of its storage is told in `notes` (see `open_storage`)."""
    storage = open_storage(config.storage, config.run_dir, notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=storage,
            study_name=config.name,
            directions=job.directions(),
            sampler=SeededPerWorker(job.make_sampler, config.seed),
            pruner=job.make_pruner(),
            load_if_exists=True,
        )
    stored = study.user_attrs.get(job.kind)
    if stored is None:
        study.set_user_attr(job.kind, job.fingerprint())
    else:
        _refuse_other_settings(job, config, stored)
    return study, storage


def check_settings(job: StudyJob, config: StudyConfig, notes: list[str] | None = None) -> None:
    """Refuse to resume a study created with other settings before any work is done for it (decoding the data,
    say). It creates no study (`run_study` does) and, where no journal exists yet, no file."""
    journal = config.storage is None or config.storage.startswith(JOURNAL_PREFIX)
    if journal and not journal_path(config.storage, config.run_dir).exists():
        return
    storage = open_storage(config.storage, config.run_dir, notes)
    try:
        study_id = storage.get_study_id_from_name(config.name)
    except KeyError:
        return
    stored = storage.get_study_user_attrs(study_id).get(job.kind)
    if stored is not None:
        _refuse_other_settings(job, config, stored)


_UNSET = object()


def _refuse_other_settings(job: StudyJob, config: StudyConfig, stored: dict[str, Any]) -> None:
    """An `InputError` naming each setting that differs from the stored fingerprint, as `name: old -> new`."""
    old, new = _flattened(stored), _flattened(job.fingerprint())
    changed = [name for name in sorted(set(old) | set(new)) if old.get(name, _UNSET) != new.get(name, _UNSET)]
    if changed:
        differences = "; ".join(
            f"{name}: {_shown(old.get(name, _UNSET))} -> {_shown(new.get(name, _UNSET))}" for name in changed
        )
        raise InputError(
            f"study {config.name!r} in {config.storage_label} was created with other settings "
            f"({differences}); rerun with those, or use another study name or run directory"
        )


def _flattened(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of dotted names: {"proxy": {"epochs": 2}} -> {"proxy.epochs": 2}."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    return "(not set)" if value is _UNSET else repr(value) if isinstance(value, str) else str(value)
