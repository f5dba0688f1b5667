"""The proxy's chance level, and the margin within which an accuracy cannot be told from it.

A classifier that ignores its input scores the share of the validation split's largest class: 1 / classes
when the classes are balanced. An accuracy measured on n validation images has the binomial standard error
sqrt(p (1 - p) / n); at chance, p is the chance level. An accuracy under chance + `MARGIN_SE` standard errors
is not told apart from guessing (3 standard errors: a guesser passes it about once in 740 tries, so the best
of the hundreds of candidates a search trains rarely does by luck alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MARGIN_SE = 3.0
CHANCE_RULE = (
    "chance: the share of the validation split's largest class (1 / classes when the classes are the same "
    "size; balanced: their sizes differ by one image at most); "
    f"near chance: under chance + {MARGIN_SE:g} binomial standard errors, sqrt(chance * (1 - chance) / n) "
    "on the n validation images"
)
FIX = (
    "train the proxy longer (--proxy-epochs), at a higher --proxy-resolution, or on more images "
    "(--proxy-train-images, --proxy-val-images, more data)"
)


@dataclass(frozen=True)
class ChanceLevel:
    """The accuracy of guessing the largest class, on `val_images` validation images of `classes` classes."""

    chance: float
    classes: int
    val_images: int
    balanced: bool
    unseen: int = 0
    """Classes with no validation image (a class of a few images whose held-out share rounds to none): the
    accuracy says nothing of them."""

    @property
    def standard_error(self) -> float:
        return math.sqrt(self.chance * (1 - self.chance) / self.val_images)

    @property
    def margin(self) -> float:
        """By how much an accuracy must beat chance to be told apart from it."""
        return MARGIN_SE * self.standard_error

    @property
    def threshold(self) -> float:
        return self.chance + self.margin

    def near(self, accuracy: float) -> bool:
        """Whether `accuracy` is within the margin of chance (below chance counts as near)."""
        return accuracy < self.threshold

    def record(self) -> dict[str, Any]:
        return {
            "chance": round(self.chance, 6),
            "classes": self.classes,
            "val_images": self.val_images,
            "balanced": self.balanced,
            "classes_without_val_images": self.unseen,
            "margin": round(self.margin, 6),
            "threshold": round(self.threshold, 6),
            "rule": CHANCE_RULE,
        }

    def line(self, what: str = "an accuracy") -> str:
        """The chance level in one line, as every report and command states it (`chance_line`)."""
        return chance_line(self.record(), what)

    def warning(self, best: float, what: str = "the best candidate's proxy accuracy") -> str:
        """The sentence that says an accuracy is near chance, and what to do about it."""
        return (
            f"{what} {best:.4f} is within {self.margin:.4f} ({MARGIN_SE:g} standard errors on "
            f"{self.val_images:,} validation images) of chance {self.chance:.4f}: the proxy has not told the "
            f"candidates apart from guessing; {FIX}"
        )

    def unseen_warning(self) -> str | None:
        """The sentence that says some classes have no validation image, or None where every class has one."""
        return unseen_classes_warning(self.record())


def chance_level(labels: np.ndarray, classes: int) -> ChanceLevel:
    """The chance level of a validation split with these labels."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("a chance level needs at least one validation image")
    return ChanceLevel(
        chance=float(counts.max()) / total,
        classes=classes,
        val_images=total,
        balanced=bool(counts.max() - counts.min() <= 1),
        unseen=int((counts == 0).sum()),
    )


def unseen_classes_warning(record: dict[str, Any]) -> str | None:
    """From a chance level's record (`ChanceLevel.record`, as run.yaml holds it), the sentence that says some
    classes have no validation image; None where every class has one (or the record, older, does not say)."""
    unseen = record.get("classes_without_val_images")
    if not isinstance(unseen, int) or isinstance(unseen, bool) or unseen <= 0:
        return None
    return (
        f"{unseen} of the {record.get('classes')} classes have no image among the proxy's {record.get('val_images')} "
        "validation images, so its scores say nothing of them; give those classes more images, or hold out more "
        "(--proxy-val-images)"
    )


def chance_line(record: dict[str, Any], what: str = "an accuracy") -> str:
    """A chance level's record (`ChanceLevel.record`, as run.yaml and `--json` hold it) in one line: `what` is the
    kind of score it is the chance level of ("an accuracy", "a score")."""
    return (
        f"chance level {record['chance']:.4f} ({record['classes']} classes on {record['val_images']:,} validation "
        f"images; under {record['threshold']:.4f} {what} is not told apart from it)"
    )
