"""The proxies by name, with no imports: the command line's help reads them without loading the library."""

PROXIES: tuple[str, ...] = ("train", "supernet", "zero-cost")
"""The proxies the search offers; `proxy-check` also ranks by the "params" and "flops" baselines."""

ZERO_COST_SCORES: tuple[str, ...] = ("naswot", "synflow")
"""Training-free scores by name; "zero-cost" means the first."""

PROXY_NAMES: tuple[str, ...] = PROXIES + ZERO_COST_SCORES
DEFAULT_PROXIES: tuple[str, ...] = ("train", "zero-cost", "synflow")
"""The proxies `proxy-check` ranks when none is named."""

ZERO_COST_FLOOR = 1e-12
"""The score of a degenerate network under a training-free score (a singular NASWOT kernel, a zero synflow)."""
