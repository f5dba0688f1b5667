"""What a coefficient grid is: its axes (held as exact decimals), the points the constraint keeps, the network
each point builds, and the grid's settings.

A grid at phi = k keeps the points whose growth per unit of phi meets the paper's constraint: the formula's
|alpha * beta^2 * gamma^2 - 2| <= tolerance (so alpha^k * beta^2k * gamma^2k ~ 2^k), or with `measured`,
|r^(1/k) - 2| <= tolerance for r the measured FLOPs ratio of the phi = k network over the base. Under the
formula every phi keeps the same points; each point builds its phi = k network (`point_spec`), which the
proxy trains at `round(proxy resolution * gamma^k)` pixels. `GridPoint.network` names that network by a
digest of its spec at the proxy resolution: points with one digest (twins) are one network to the proxy.
At phi = 1 rounding makes many twins (repeats round up, channels to multiples of 8); at higher phi the
coefficients' differences survive the rounding, so a grid at phi = 2 or 3 can tell apart what phi = 1 cannot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from optuna.distributions import FloatDistribution

from effnet.nas import checks
from effnet.nas.errors import InputError, SettingError
from effnet.nas.net.flops import analytic_cost
from effnet.nas.net.limits import spec_cost
from effnet.nas.net.spec import NetworkSpec
from effnet.nas.net.spec_file import spec_to_dict
from effnet.nas.proxies.config import ProxyConfig
from effnet.nas.space.fit import MAX_CLASSES
from effnet.nas.study.study_config import StudyConfig
from effnet.scaling.compound import MAX_COEFFICIENT, compound_scale, scaled_resolution
from effnet.scaling.latency import LatencySettings

FLOPS_TARGET = 2
"""The paper's constraint per unit of phi: alpha * beta^2 * gamma^2 ~ 2 (each unit of phi doubles the FLOPs)."""
MAX_AXIS_VALUES = 1000
MAX_GRID_SIZE = 10_000
"""Points a grid may span before the tolerance filters them (the default spans 441): each is sized when the
grid is made, and each kept one is a trial."""
MAX_PHI = 20
MAX_REPEATS = 100
NETWORK_DIGITS = 12
"""Hex digits of a network's name (48 bits: no two networks of any grid share one)."""
_DIGITS = Decimal("1e-9")
COEFFICIENTS = ("alpha", "beta", "gamma")


# -- axes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisRange:
    """One coefficient's closed range, held exactly (as decimals) so a step of 0.05 lands on 1.15."""

    low: Decimal
    high: Decimal

    @property
    def text(self) -> str:
        return f"{_plain(self.low)}:{_plain(self.high)}"

    def values(self, step: Decimal) -> tuple[float, ...]:
        """low, low + step, ... up to high, computed in decimal and rounded to 1e-9."""
        count = int((self.high - self.low) / step) + 1
        return tuple(float((self.low + k * step).quantize(_DIGITS)) for k in range(count))

    def distribution(self) -> FloatDistribution:
        return FloatDistribution(float(self.low), float(self.high))


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


def parse_range(text: str, setting: str) -> AxisRange:
    """`1.0:1.4` (a closed range) or `1.2` (one value); both ends at least 1. Errors name `setting`."""
    parts = str(text).split(":")
    if len(parts) > 2:
        raise SettingError(setting, f"{text!r} is not a range; write LOW:HIGH like 1.0:1.4, or one value like 1.2")
    try:
        ends = [Decimal(p.strip()) for p in parts]
    except InvalidOperation:
        raise SettingError(
            setting, f"{text!r} is not a range; write LOW:HIGH like 1.0:1.4, or one value like 1.2"
        ) from None
    if not all(e.is_finite() for e in ends):
        raise SettingError(setting, f"{text!r}: both ends must be finite numbers, like 1.0:1.4")
    low, high = ends[0], ends[-1]
    if low < 1:
        raise SettingError(
            setting,
            f"{text!r}: coefficients must be at least 1 (compound scaling only grows "
            f"the network); start the range at 1.0 or above",
        )
    if low > high:
        raise SettingError(
            setting, f"{text!r}: the low end is above the high end; write it as {_plain(high)}:{_plain(low)}"
        )
    if high > MAX_COEFFICIENT:
        raise SettingError(
            setting, f"{text!r}: coefficients must be at most {MAX_COEFFICIENT:g}; end the range there or below"
        )
    return AxisRange(low, high)


def parse_step(step: float | str) -> Decimal:
    try:
        value = Decimal(str(step))
    except InvalidOperation:
        raise SettingError("step", f"{step!r} is not a number; use e.g. 0.05") from None
    if not value.is_finite() or value <= 0:
        raise SettingError("step", f"must be a positive number like 0.05, got {step}")
    return value


# -- points and their networks --------------------------------------------------------------------


def spec_digest(spec: NetworkSpec, length: int) -> str:
    """The first `length` hex digits of a SHA-256 of the spec without its provenance."""
    text = json.dumps(spec_to_dict(spec.replace(provenance={})), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def point_spec(base: NetworkSpec, alpha: float, beta: float, gamma: float, phi: int) -> NetworkSpec:
    """The network a grid point builds: `base` compound-scaled to `phi`."""
    return compound_scale(base, alpha, beta, gamma, phi, name=f"{base.name}-grid")


def point_proxy_resolution(proxy_resolution: int, gamma: float, phi: int) -> int:
    """The proxy scales resolution like the model does: `scaled_resolution(proxy resolution, gamma^phi)`."""
    return scaled_resolution(proxy_resolution, gamma**phi)


@dataclass(frozen=True)
class GridPoint:
    """One (alpha, beta, gamma), the phi = k network it builds, and that network's FLOPs growth."""

    alpha: float
    beta: float
    gamma: float
    product: float
    """alpha * beta^2 * gamma^2, computed exactly from the decimal grid values."""
    flops: int
    params: int
    flops_ratio: float
    """Analytic FLOPs of the phi = k network (after the reference rounding) over the base's."""
    proxy_resolution: int
    network: str
    """The network the proxy trains, named: a digest of the phi = k spec at `proxy_resolution`."""

    @property
    def key(self) -> tuple[float, float, float]:
        return (self.alpha, self.beta, self.gamma)

    @property
    def label(self) -> str:
        """`1.2/1.1/1.15`: alpha/beta/gamma."""
        return "/".join(f"{v:g}" for v in self.key)

    def params_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


def point_key(params: dict[str, Any]) -> tuple[float, float, float] | None:
    if not all(name in params for name in COEFFICIENTS):
        return None
    return tuple(round(float(params[name]), 9) for name in COEFFICIENTS)  # type: ignore[return-value]


@dataclass(frozen=True)
class GridDefinition:
    alpha: AxisRange
    beta: AxisRange
    gamma: AxisRange
    step: Decimal
    tolerance: float
    measured: bool
    """Keep points by the measured FLOPs ratio of the phi = k network instead of the formula."""
    phi: int = 1
    """The grid builds each point's phi = k network; the constraint is per unit of phi (module notes)."""

    def __post_init__(self) -> None:
        checks.number("tolerance", self.tolerance, low=0)
        checks.whole("phi", self.phi, low=1, high=MAX_PHI)
        counts = [int((r.high - r.low) / self.step) + 1 for r in (self.alpha, self.beta, self.gamma)]
        if max(counts) > MAX_AXIS_VALUES or counts[0] * counts[1] * counts[2] > MAX_GRID_SIZE:
            raise SettingError(
                "step",
                f"{_plain(self.step)} makes a grid of {counts[0]}x{counts[1]}x{counts[2]} "
                f"points; use a larger step or narrower ranges",
            )

    @classmethod
    def from_ranges(
        cls,
        alpha: str = "1.0:1.4",
        beta: str = "1.0:1.3",
        gamma: str = "1.0:1.3",
        step: float | str = 0.05,
        tolerance: float = 0.1,
        measured: bool = False,
        phi: int = 1,
    ) -> GridDefinition:
        """A grid from ranges written `LOW:HIGH` (or one value); the defaults are the command line's:
        alpha 1.0-1.4, beta and gamma 1.0-1.3, step 0.05, |alpha*beta^2*gamma^2 - 2| <= 0.1, phi = 1."""
        return cls(
            parse_range(alpha, "alpha_range"),
            parse_range(beta, "beta_range"),
            parse_range(gamma, "gamma_range"),
            parse_step(step),
            tolerance,
            measured,
            phi,
        )

    @property
    def rule(self) -> str:
        if not self.measured:
            measure = "alpha*beta^2*gamma^2"
        elif self.phi == 1:
            measure = "measured FLOPs ratio of the phi=1 network"
        else:
            measure = f"(measured FLOPs ratio of the phi={self.phi} network)^(1/{self.phi})"
        return f"|{measure} - {FLOPS_TARGET}| <= {self.tolerance:g}"

    def describe(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha.text,
            "beta": self.beta.text,
            "gamma": self.gamma.text,
            "step": _plain(self.step),
            "tolerance": self.tolerance,
            "phi": self.phi,
            "constraint": "measured" if self.measured else "formula",
            "rule": self.rule,
        }

    def points(self, base: NetworkSpec, proxy_resolution: int) -> list[GridPoint]:
        """The kept points in grid order (alpha, then beta, then gamma ascending), each with the network it
        builds for a proxy at `proxy_resolution` (at gamma = 1)."""
        base_flops = analytic_cost(base).flops
        tolerance = Decimal(str(self.tolerance))
        alphas, betas, gammas = (r.values(self.step) for r in (self.alpha, self.beta, self.gamma))
        kept = []
        for a in alphas:
            for b in betas:
                for g in gammas:
                    product = Decimal(str(a)) * Decimal(str(b)) ** 2 * Decimal(str(g)) ** 2
                    if not self.measured and abs(product - FLOPS_TARGET) > tolerance:
                        continue
                    spec = point_spec(base, a, b, g, self.phi)
                    cost = analytic_cost(spec)
                    ratio = cost.flops / base_flops
                    if self.measured and abs(ratio ** (1 / self.phi) - FLOPS_TARGET) > self.tolerance:
                        continue
                    resolution = point_proxy_resolution(proxy_resolution, g, self.phi)
                    problem = spec_cost(spec.replace(resolution=resolution)).problem()
                    if problem is not None:
                        raise InputError(
                            f"the grid point alpha {a}, beta {b}, gamma {g} at phi {self.phi} builds a "
                            f"network with {problem}; lower --phi or narrow the ranges"
                        )
                    kept.append(
                        GridPoint(
                            a,
                            b,
                            g,
                            float(product.quantize(_DIGITS)),
                            cost.flops,
                            cost.params,
                            ratio,
                            resolution,
                            spec_digest(spec.replace(resolution=resolution), NETWORK_DIGITS),
                        )
                    )
        if not kept:
            raise InputError(
                f"the grid alpha {self.alpha.text}, beta {self.beta.text}, gamma {self.gamma.text} "
                f"(step {_plain(self.step)}) holds no point with {self.rule}; widen the ranges "
                f"or raise --tolerance"
            )
        return kept


# -- settings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridConfig:
    """A grid: the base network, the grid definition, the proxy (its resolution is the one at gamma = 1;
    a point trains at `point_proxy_resolution`), where the study lives, `repeats` (K: each distinct
    network is trained with K seeds, `seed(0)` ... `seed(K - 1)`), and `max_points`, how many more
    evaluations (one per distinct network and repeat) this run may start (None: all). `classes` replaces the
    base's class count (None: the base's own, which a search wrote from its data), so every point's network,
    parameters and FLOPs are those of that classifier. With `latency`, each distinct network's latency is
    measured on this machine once the study stops (`effnet.scaling.latency`); a resumed grid need not agree on
    it."""

    base: NetworkSpec
    grid: GridDefinition
    proxy: ProxyConfig = ProxyConfig()
    study: StudyConfig = StudyConfig(run_dir=Path("runs/grid"), name="grid")
    max_points: int | None = None
    repeats: int = 1
    classes: int | None = None
    latency: LatencySettings | None = None

    def __post_init__(self) -> None:
        checks.instance("base", self.base, NetworkSpec, "a NetworkSpec (effnet.load_spec(path))")
        if self.classes is not None:
            checks.whole("classes", self.classes, low=2, high=MAX_CLASSES)
            object.__setattr__(self, "base", self.base.replace(num_classes=self.classes))
        if self.proxy.name == "supernet":
            raise SettingError(
                "proxy",
                "supernet scores the networks of a search space, and a grid's scaled "
                "networks are in none; use train, zero-cost or synflow",
            )
        if self.max_points is not None:
            checks.whole("max_points", self.max_points, low=1)
        checks.whole("repeats", self.repeats, low=1, high=MAX_REPEATS)
        if self.latency is not None:
            checks.instance("latency", self.latency, LatencySettings, "effnet.scaling.latency.LatencySettings()")

    def points(self) -> list[GridPoint]:
        return self.grid.points(self.base, self.proxy.resolution)

    def seed(self, repeat: int) -> int:
        """The proxy's seed for repeat `repeat`: the study's seed plus the repeat (so repeat 0 scores as a
        one-repeat grid does). The data split keeps the study's seed: repeats measure the training's noise."""
        return (self.study.seed + repeat) % checks.SEED_LIMIT

    def proxy_settings(self) -> dict[str, Any]:
        return {
            "name": self.proxy.name,
            "data": self.proxy.data,
            "epochs": self.proxy.epochs,
            "resolution": self.proxy.resolution,
            "resolution_rule": "round(resolution * gamma^phi), halves up (the model's own rule)",
            "batch_size": self.proxy.batch_size,
            "seed": self.study.seed,
            "repeats": self.repeats,
            "repeat_seeds": "seed + repeat, repeat 0 .. repeats - 1",
            "score": self.score_name,
        }

    @property
    def score_name(self) -> str:
        if self.proxy.name == "train":
            return "validation top-1 accuracy"
        return f"{self.proxy.name} score (higher is better)"

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed grid must agree on: otherwise its scores are not comparable."""
        return {
            "base": spec_digest(self.base, 16),
            "classes": self.base.num_classes,
            "resolution": self.base.resolution,
            **self.grid.describe(),
            "proxy": self.proxy.fingerprint(),
            "seed": self.study.seed,
            "repeats": self.repeats,
        }

    def distributions(self) -> dict[str, FloatDistribution]:
        return {
            "alpha": self.grid.alpha.distribution(),
            "beta": self.grid.beta.distribution(),
            "gamma": self.grid.gamma.distribution(),
        }

    def settings(self, base_label: str) -> dict[str, Any]:
        return {
            "base": base_label,
            "grid": self.grid.describe(),
            "proxy": self.proxy_settings(),
            "study": {
                **dataclasses.asdict(self.study),
                "run_dir": str(self.study.run_dir),
                "storage": self.study.storage_label,
            },
            "max_points": self.max_points,
            "repeats": self.repeats,
            "classes": self.base.num_classes,
            "classes_from": "--classes" if self.classes is not None else "the base spec",
            "latency": self.latency.record() if self.latency is not None else None,
        }
