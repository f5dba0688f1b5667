"""The words a setting takes, each list in one place: the library checks a value against it and the command
line offers it (in its help and shell completion). Importing this module loads nothing else, so the command
line can name the choices without loading torch or optuna."""

from __future__ import annotations

OBJECTIVES = ("reward", "hard", "pareto")
"""What a search maximises: MnasNet's soft reward, its hard constraint, or accuracy-vs-FLOPs Pareto fronts."""
SAMPLERS = ("tpe", "random", "nsga2")
PRUNERS = ("hyperband", "median", "none")
DEVICES = ("auto", "cpu", "cuda")
"""Where a study's workers train (`--device`)."""
EXPORT_FORMATS = ("onnx", "torchscript", "timm", "torchvision")
WEIGHTS = ("best", "ema", "raw")
"""Which of a training checkpoint's weights: the ones that scored best on validation (the checkpoint's record of
which), the moving average, or the trained weights themselves."""
LATENCY_RUNTIMES = ("folded", "torch", "onnxruntime")
"""What runs a network whose latency is measured: torch with BatchNorm folded (effnet's inference path), the eval
model as built, or its folded ONNX export in onnxruntime."""
