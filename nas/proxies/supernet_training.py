"""Training the supernet once, into its checkpoint in the run directory, resumable at any step.

Each step trains paths drawn uniformly from the space's decisions among the paths inside the FLOPs band (those
outside are never scored, so they are not trained) on one batch of the proxy's training split, as the recipe
says (`supernet_recipe`, `effnet.nas.proxies.supernet_recipes`): `uniform`, one path on the labels (single-path
one-shot, Guo et al., ECCV 2020); `sandwich`, the band's largest path on the labels and its smallest and two
random ones distilled from it (BigNAS). With the proxy's transforms, AdamW and a one-cycle schedule at the
proxy's learning rate and weight decay, without dropout or stochastic depth (the random paths are noise enough:
the supernet's loss fell faster without them). Step s of epoch e draws its paths from (seed, e, s) and the
batches come from (seed, e) (`EpochSampler`), so a training resumed from its checkpoint continues exactly as if
it had never stopped. The recorded losses, one mean per epoch, are the trained paths' (uniform) or the largest
path's (sandwich); a checkpoint taken within an epoch keeps that epoch's step losses so far (`epoch_losses`).

The checkpoint, `supernet-<key>.pt` in the run directory (the key a digest of every setting that shapes the
supernet: `SupernetSetup.settings`), is written atomically every `CHECKPOINT_EVERY_S`, when the training stops
early (the time limit, a stop signal) and at its end; a stop is only ever taken at the end of a step, so every
checkpoint holds a consistent state. A study's workers and a resumed study load the finished one.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from effnet.nas.data.loader import EpochSampler, sample_seed
from effnet.nas.data.sources import DataSplits
from effnet.nas.errors import InputError
from effnet.nas.net.flops import analytic_flops
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.progress import Progress, ProgressCallback
from effnet.nas.proxies.batches import ProxyBatches
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.proxy import ProxyFailure
from effnet.nas.proxies.supernet import Supernet
from effnet.nas.proxies.supernet_recipes import Sandwich, band_extremes, sandwich_backward
from effnet.nas.proxies.train import check_finite, parameter_groups
from effnet.nas.signals import Interrupted, stop_signals, training
from effnet.nas.space.choices import SearchSpace
from effnet.nas.training.checkpoint import check_state, load_checkpoint, save_checkpoint
from effnet.nas.training.runtime import autocast_for, cpu_threads, place_model, resolve_device
from effnet.nas.units import format_size

CHECKPOINT_FORMAT = "effnet-supernet-checkpoint"
CHECKPOINT_FILES = "supernet-*.pt"
"""The names of the checkpoints in a run directory (a run writes one per supernet setting)."""
CHECKPOINT_VERSION = 1
CHECKPOINT_EVERY_S = 60.0
"""Seconds between checkpoints while training (one holds thousands of small tensors: 0.1-0.3 s to write)."""
MAX_PATH_DRAWS = 10_000
"""Random draws allowed for one path inside the FLOPs band before the band is declared out of reach."""
SHAPING = (
    "data",
    "resolution",
    "batch_size",
    "lr",
    "weight_decay",
    "max_train_batches",
    "train_images",
    "val_images",
    "augment",
    "supernet_epochs",
    "supernet_kernels",
    "supernet_recipe",
    "supernet_ops",
)
"""The proxy settings that shape a trained supernet (the `train` proxy's own epochs do not)."""


@dataclass(frozen=True)
class SupernetSetup:
    """What a supernet is of and where it lives: the space, the FLOPs band its paths are drawn from, and the
    run directory that holds its checkpoint."""

    space: SearchSpace
    low: float
    high: float
    run_dir: Path

    def settings(self, config: ProxyConfig, seed: int) -> dict[str, Any]:
        """Everything that shapes the trained supernet, as plain data."""
        proxy = config.fingerprint()
        band = [round(self.low), round(self.high)]  # FLOPs are whole: 400e6 * 1.1 and 440_000_000 are one band
        return {
            "space": self.space.name,
            "space_digest": self.space.digest(),
            "band": band,
            "proxy": {k: proxy[k] for k in SHAPING if k in proxy},  # uniform's recipe is not named: keys kept
            "seed": seed,
        }

    def checkpoint(self, config: ProxyConfig, seed: int) -> Path:
        text = json.dumps(self.settings(config, seed), sort_keys=True)
        return Path(self.run_dir) / f"supernet-{hashlib.sha256(text.encode()).hexdigest()[:12]}.pt"

    def build(self, config: ProxyConfig, data: DataSplits) -> Supernet:
        return Supernet(
            self.space,
            data.resolution,
            data.num_classes,
            data.in_channels,
            config.supernet_kernels,
            config.supernet_ops,
        )


@dataclass(frozen=True)
class SupernetTraining:
    """Where a supernet's training stands: its checkpoint, steps done of all, training seconds over every run
    (`seconds_now` in this call), and why this call stopped before the end (`timeout`, `interrupt`), if it did."""

    path: Path
    steps: int
    total_steps: int
    seconds: float
    seconds_now: float
    stopped: str | None = None
    signal: int | None = None

    @property
    def complete(self) -> bool:
        return self.steps >= self.total_steps


class ResumedSampler(EpochSampler):
    """An epoch's order from position `skip` on: a resumed epoch continues where it stopped."""

    skip = 0

    def indices(self) -> Any:
        return super().indices()[self.skip :]


def draw_path(space: SearchSpace, rng: random.Random, low: float, high: float) -> NetworkSpec:
    """A path drawn uniformly from the space's decisions, among those with analytic FLOPs in [low, high]."""
    for _ in range(MAX_PATH_DRAWS):
        spec = space.random_spec(rng)
        if low <= analytic_flops(spec) <= high:
            return spec
    raise InputError(
        f"no architecture of the space {space.name!r} in {format_size(low)}–{format_size(high)} FLOPs "
        f"in {MAX_PATH_DRAWS:,} random draws: the supernet has no path to train; move the target or "
        "widen the FLOPs tolerance"
    )


def read_checkpoint(setup: SupernetSetup, config: ProxyConfig, seed: int) -> dict[str, Any] | None:
    """The supernet's checkpoint (`torch.load(weights_only=True)`), None where there is none yet."""
    path = setup.checkpoint(config, seed)
    if not path.exists():
        return None
    state = load_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
    if state.get("settings") != setup.settings(config, seed):
        raise InputError(f"{path}: a supernet of other settings under this name; delete it to train it again")
    kinds: dict[str, type | tuple[type, ...]] = {
        "step": int,
        "total_steps": int,
        "seconds": (int, float),
        "losses": list,
        "epoch_losses": list,
        "model": dict,
    }
    wrong = next((key for key, kind in kinds.items() if not isinstance(state.get(key), kind)), None)
    if wrong is not None:
        raise InputError(
            f"{path}: the supernet checkpoint's {wrong!r} is missing or of the wrong type; delete it "
            "to train the supernet again"
        )
    return state


def load_supernet(setup: SupernetSetup, config: ProxyConfig, data: DataSplits, seed: int) -> Supernet:
    """The trained supernet, on the CPU; refused unless its training finished."""
    state = read_checkpoint(setup, config, seed)
    if state is None or state["step"] < state["total_steps"]:
        done = "no checkpoint" if state is None else f"{state['step']:,} of {state['total_steps']:,} steps"
        raise InputError(
            f"{setup.checkpoint(config, seed)}: the supernet is not trained ({done}); run the search "
            "or proxy-check again to finish its training"
        )
    supernet = setup.build(config, data)
    _load_model(supernet, state, setup.checkpoint(config, seed))
    return supernet.eval()


def _load_model(supernet: Supernet, state: dict[str, Any], path: Path) -> None:
    """The checkpoint's weights into `supernet`, checked first (`_check_model`)."""
    _check_model(supernet, state, path)
    supernet.load_state_dict(state["model"])


def _check_model(supernet: Supernet, state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint's weights, naming the first offending tensor, unless they are `supernet`'s own, dense
    and finite, with finite recorded losses: a supernet of NaN would score every candidate alike."""
    fix = "delete it to train the supernet again"
    model = state.get("model")
    if not isinstance(model, dict):
        raise InputError(f"{path}: the supernet checkpoint holds no weights; {fix}")
    check_state(model, str(path), fix, supernet.state_dict())
    for key in ("losses", "epoch_losses"):
        losses = state.get(key)
        if not isinstance(losses, list) or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses):
            raise InputError(f"{path}: the supernet's recorded {key} are not all finite numbers; {fix}")


def train_supernet(
    setup: SupernetSetup,
    config: ProxyConfig,
    data: DataSplits,
    runtime: ProxyRuntime,
    deadline: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> SupernetTraining:
    """Train the supernet to the end, resuming its checkpoint, or find it trained; stop early at `deadline`
    (a `time.time()`) or a stop signal, with the checkpoint saved. Leaves torch's random state and threads as
    they were."""
    path = setup.checkpoint(config, runtime.seed)
    state = read_checkpoint(setup, config, runtime.seed)
    if state is not None and state["step"] >= state["total_steps"]:
        with torch.device("meta"):  # its shapes, no memory and no random numbers drawn
            shapes = setup.build(config, data)
        _check_model(shapes, state, path)
        return SupernetTraining(path, state["step"], state["total_steps"], state["seconds"], 0.0)
    device = resolve_device(runtime.device)
    forked = [device.index or 0] if device.type == "cuda" else []
    with cpu_threads(runtime.threads), torch.random.fork_rng(devices=forked), stop_signals():
        torch.manual_seed(runtime.seed)
        return _Trainer(setup, config, data, runtime, device, path).run(state, deadline, on_progress)


class _Trainer:
    """One run of the supernet's training loop (`train_supernet`)."""

    def __init__(
        self,
        setup: SupernetSetup,
        config: ProxyConfig,
        data: DataSplits,
        runtime: ProxyRuntime,
        device: torch.device,
        path: Path,
    ):
        self.setup, self.config, self.seed, self.device, self.path = setup, config, runtime.seed, device, path
        self.model = place_model(setup.build(config, data), device)
        self.sampler = ResumedSampler(len(data.train), seed=runtime.seed, shuffle=True)
        self.batches = ProxyBatches(data, config, runtime, self.sampler)
        self.steps = self.batches.steps_per_epoch()
        self.total = config.supernet_epochs * self.steps
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, config.weight_decay), lr=config.lr)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=config.lr, total_steps=self.total)
        self.done, self.earlier_seconds = 0, 0.0
        self.losses: list[float] = []
        self.epoch_losses = torch.zeros(self.steps, device=device)
        """The current epoch's step losses (those before `done`)."""
        self.started = 0.0
        self.sandwich: Sandwich | None = None
        if config.supernet_recipe == "sandwich":
            extremes = band_extremes(setup.space, setup.low, setup.high, self._draw, runtime.seed)
            self.sandwich = Sandwich(*(p.replace(dropout=0.0, drop_connect=0.0) for p in extremes))

    @property
    def seconds(self) -> float:
        """Training seconds over every run, this one so far included."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def run(
        self, state: dict[str, Any] | None, deadline: float | None, on_progress: ProgressCallback | None
    ) -> SupernetTraining:
        if state is not None:
            _load_model(self.model, state, self.path)
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            self.done, self.earlier_seconds, self.losses = state["step"], state["seconds"], list(state["losses"])
            earlier = state["epoch_losses"]
            self.epoch_losses[: len(earlier)] = torch.tensor(earlier, dtype=self.epoch_losses.dtype)
        self.started, stopped, signum = time.perf_counter(), None, None
        try:
            with training():
                stopped = self._epochs(deadline, on_progress)
        except Interrupted as stop:
            stopped, signum = "interrupt", stop.signum
        seconds = self._save()
        return SupernetTraining(
            self.path, self.done, self.total, seconds, seconds - self.earlier_seconds, stopped, signum
        )

    def _epochs(self, deadline: float | None, on_progress: ProgressCallback | None) -> str | None:
        """Train until the last step, the deadline ("timeout") or a stop signal (raises `Interrupted`)."""
        autocast = autocast_for(self.device)
        check_every = 1 if self.device.type == "cpu" else self.steps  # a finite-loss check syncs a GPU
        saved = time.monotonic()
        while self.done < self.total:
            epoch, first = divmod(self.done, self.steps)
            self.sampler.set_epoch(epoch + 1)
            self.sampler.skip = first * self.batches.batch
            losses = self.epoch_losses
            self.model.train()
            for step, batch in zip(range(first, self.steps), self.batches.train_loader, strict=False):
                rng = random.Random(sample_seed(self.seed, epoch + 1, step))
                images = self.batches.normalize(batch.images)
                labels = batch.labels.to(self.device, non_blocking=True)
                self.optimizer.zero_grad(set_to_none=True)
                if self.sandwich is None:
                    with autocast:
                        loss = F.cross_entropy(self.model(images, self._draw(rng)), labels)
                    loss.backward()
                else:
                    loss = sandwich_backward(self.model, images, labels, self.sandwich.paths(rng, self._draw), autocast)
                losses[step] = loss.detach()
                with training(active=False):  # a stop signal waits for the end of the step
                    if (step + 1) % check_every == 0:
                        self._check(losses, step + 1 - check_every, step + 1, epoch + 1)
                    self.optimizer.step()
                    self.schedule.step()
                    self.done += 1
                    if step + 1 == self.steps:  # recorded before any stop: a resumed run starts the next epoch
                        self.losses.append(float(losses.mean()))
                    if on_progress is not None:
                        on_progress(Progress(self.done, self.total, self._status(epoch + 1), preparing=True))
                    if deadline is not None and time.time() >= deadline:
                        return "timeout"
                    if time.monotonic() - saved >= CHECKPOINT_EVERY_S:
                        self._save()
                        saved = time.monotonic()
        return None

    def _draw(self, rng: random.Random) -> NetworkSpec:
        """An in-band path, as the supernet trains it: without dropout or stochastic depth."""
        path = draw_path(self.setup.space, rng, self.setup.low, self.setup.high)
        return path.replace(dropout=0.0, drop_connect=0.0)  # the random paths regularise enough

    def _check(self, losses: torch.Tensor, start: int, stop: int, epoch: int) -> None:
        try:
            check_finite(losses, start, stop, epoch)
        except ProxyFailure as err:
            raise InputError(f"supernet training: {err}") from None

    def _status(self, epoch: int) -> str:
        loss = f", loss {self.losses[-1]:.3f}" if self.losses else ""
        return f"training the supernet: epoch {epoch}/{self.config.supernet_epochs}{loss}"

    def _save(self) -> float:
        """Write the checkpoint (a finished one without the optimizer's state: a third of the size, and nothing
        resumes it); returns the training seconds it records."""
        seconds = self.seconds
        resume = (
            {}
            if self.done >= self.total
            else {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict()}
        )
        save_checkpoint(
            {
                "settings": self.setup.settings(self.config, self.seed),
                "model": self.model.state_dict(),
                "step": self.done,
                "total_steps": self.total,
                "seconds": seconds,
                "losses": self.losses,
                "epoch_losses": self.epoch_losses[: self.done % self.steps].tolist(),
                **resume,
            },
            self.path,
            CHECKPOINT_FORMAT,
            CHECKPOINT_VERSION,
        )
        return seconds
