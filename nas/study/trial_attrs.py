"""The names of what effnet records on a study's trials (Optuna user attributes), and of the two system
attributes of Optuna's own it reads.

They are the storage's format: a study resumed by a later effnet reads them back, so a name here never changes.
The study runner and the recovery of dead workers write the first group on every trial, whatever the job; the
search and the grid write theirs.
"""

from __future__ import annotations

# -- every study (the runner, the recovery of trials whose worker is gone) -------------------------

WORKER_ATTR = "worker"
"""Who took the trial: its worker's `host:pid`, recorded first thing."""
WORKER_NAMESPACE_ATTR = "worker_namespace"
"""Where its worker's PID means that process: the boot and the PID namespace (`process_namespace`)."""
HEARTBEAT_ATTR = "heartbeat"
"""On the journal storage: when the worker last said it was alive (`time.time()`), every few seconds."""
STALE_ATTR = "stale"
"""True on a trial failed by the recovery because its worker is gone (it says nothing of the work)."""
INTERRUPTED_ATTR = "interrupted"
"""True on a trial a stop signal cut short: its worker failed it, and it is queued again."""
FAIL_REASON_ATTR = "fail_reason"
"""Why a trial failed, one line: its error, recorded by the runner (or why the recovery failed it)."""
WORK_SECONDS_ATTR = "proxy_seconds"
"""Seconds the trial's work (a proxy's scoring) took, set by a job on every trial whose work ran, however it ended:
a completed trial without it did no work (a candidate outside the FLOPs band, a surplus grid trial)."""
RETRY_OF_ATTR = "retry_of"
"""On a queued copy of a failed trial: the failed trial's number."""
RETRIES_ATTR = "retries"
"""On a queued copy of a failed trial: how many times its parameters were queued again (`MAX_RETRY` at most)."""
QUEUED_PREFIX = "queued_"
"""Attributes a job gives a trial when it queues it start with this; a queued copy of the trial keeps them."""
FAILED_TRIAL_SYSTEM_ATTR = "failed_trial"
"""Optuna's system attribute on its own queued copy of a failed trial (RDB heartbeats): the failed trial's number."""
FIXED_PARAMS_SYSTEM_ATTR = "fixed_params"
"""Optuna's system attribute on a queued trial not yet taken: the parameters it was queued with."""

# -- every job that scores networks (the search, the grid) -----------------------------------------

FLOPS_ATTR = "flops"
"""The candidate's FLOPs, counted analytically (1 multiply-add = 1 FLOP)."""
PARAMS_ATTR = "params"
"""The candidate's parameter count."""
ERROR_ATTR = "error"
"""The proxy's own error on the candidate, one line: such a trial was scored (a retry would fail alike)."""

# -- the search ------------------------------------------------------------------------------------

IN_BAND_ATTR = "in_band"
"""Whether the candidate lies in the search's bands (FLOPs, predicted latency): only those inside are trained."""
LATENCY_ATTR = "predicted_latency_s"
"""A latency-targeted search's prediction of the candidate's latency from the latency table, in seconds."""
ACCURACY_ATTR = "accuracy"
"""The proxy's validation accuracy (or score) of the candidate: its final one, or where pruning stopped it."""
REWARD_ATTR = "reward"
"""The search's objective for the candidate: its accuracy weighed by its FLOPs against the target."""
REPORT_SECONDS_ATTR = "report_seconds"
"""Seconds the candidate's per-epoch reports and pruning checks took (storage writes), apart from its training."""
EPOCHS_TRAINED_ATTR = "epochs_trained"
"""How many epochs the proxy trained the candidate."""

# -- the grid --------------------------------------------------------------------------------------

POINT_ATTR = QUEUED_PREFIX + "point"
"""Marks a trial queued for an evaluation (kept when a dead worker's trial is queued again)."""
REPEAT_ATTR = QUEUED_PREFIX + "repeat"
"""Which of the K repeats a queued trial is (kept likewise); a trial without one is repeat 0."""
SURPLUS_ATTR = "surplus"
"""True on a trial a worker took when no grid point was left: it stands down."""
NETWORK_ATTR = "network"
"""The name of the distinct network the trial's grid point builds."""
DUPLICATE_OF_ATTR = "duplicate_of"
"""The number of the trial that evaluates this trial's network and repeat instead of it."""
PRODUCT_ATTR = "product"
"""The point's alpha * beta^2 * gamma^2."""
FLOPS_RATIO_ATTR = "flops_ratio"
"""The scaled network's FLOPs over the base's."""
PROXY_RESOLUTION_ATTR = "proxy_resolution"
"""The resolution the proxy trains the point's network at."""
SEED_ATTR = "seed"
"""The seed of the repeat's training."""

# -- reports ---------------------------------------------------------------------------------------

SOURCE_TRIAL_ATTR = "trial"
"""On a report's scored copy of a study: the number of the trial copied."""
