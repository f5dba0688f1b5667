"""A search space fitted to the data: the classifier for the data's classes, the base network at the data's size.

A space file's base says `num_classes: 1000` and `resolution: 224` (ImageNet's). A search on a 5-class folder of
small images with that base would count a 1000-way head into every candidate's parameters and FLOPs and the
FLOPs target at 224 px. `fit_space` replaces both before the space's reach or any candidate is counted: the
class count is the data's (`classes` overrides), the resolution `resolution` or, left out, the one derived from
the data (`effnet.nas.data.facts.RESOLUTION_RULE`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from effnet.nas.data.facts import RESOLUTION_RULE, DataFacts, ImageSize, fitted_resolution
from effnet.nas.errors import SettingError
from effnet.nas.space.choices import SearchSpace

MAX_CLASSES = 1_000_000
"""The most classes `--classes` may give a classifier."""


@dataclass(frozen=True)
class DataFit:
    """The class count and resolution a search's networks get, and where each came from."""

    classes: int
    classes_from: str
    """"--classes" (given) or "data"."""
    resolution: int
    resolution_from: str
    """"--resolution" (given), "space" (the space's own), or "data" (lowered to the images' median size)."""
    image_size: ImageSize | None
    source: str

    def record(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "classes_from": self.classes_from,
            "resolution": self.resolution,
            "resolution_from": self.resolution_from,
            "resolution_rule": RESOLUTION_RULE,
            "median_image_size": self.image_size.record() if self.image_size else None,
        }

    def describe(self) -> str:
        """One line for the terminal."""
        origin = {"--classes": "from --classes", "data": f"from {self.source}"}[self.classes_from]
        where = {
            "--resolution": "from --resolution",
            "space": "the space's own",
            "data": "lowered to the data's images",
        }[self.resolution_from]
        size = ""
        if self.image_size is not None:
            s = self.image_size
            size = f"; median image {s.width}x{s.height} px over {s.sampled} files"
        return f"{self.classes} classes ({origin}), {self.resolution} px ({where}{size})"


def fit_space(
    space: SearchSpace, facts: DataFacts, classes: int | None = None, resolution: int | None = None
) -> tuple[SearchSpace, DataFit]:
    """The space with its base fitted to the data, and how each value was chosen; a resolution under the
    network's total stride is refused as the `resolution` setting."""
    base = space.base
    if resolution is None:
        chosen = fitted_resolution(base.resolution, facts.image_size)
        resolution_from = "space" if chosen == base.resolution else "data"
    else:
        chosen, resolution_from = resolution, "--resolution"
    if chosen < base.total_stride:
        raise SettingError(
            "resolution",
            f"{chosen} px is below the {space.name} space's total stride "
            f"{base.total_stride} px; use at least {base.total_stride}",
        )
    fit = DataFit(
        classes=facts.classes if classes is None else classes,
        classes_from="data" if classes is None else "--classes",
        resolution=chosen,
        resolution_from=resolution_from,
        image_size=facts.image_size,
        source=facts.source,
    )
    fitted = dataclasses.replace(space, base=base.replace(num_classes=fit.classes, resolution=chosen))
    return fitted, fit
