"""Training a spec: the paper's recipe, EMA, precise BatchNorm, checkpoints, runtime settings."""
