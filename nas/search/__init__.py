"""The architecture search: a study (`effnet.nas.study`) whose trials are candidates of a search space, scored by
an accuracy proxy and rewarded by MnasNet's ACC(m) * (FLOPS(m) / T) ** w.

Lowest first: `reward` (the FLOPs band and the rewards), `pruning` (the chance gate), `config` (`SearchConfig`),
`trials` (reading a study's trials back: in band, counted, best, Pareto front), `result` (`SearchResult`),
`trial` (one trial: sample, count, score, reward), `job` (the study job: sampler, pruner, progress),
`supernet_stage` (training the supernet before the study), `rescore` (`--rescore-top`: the supernet's top
candidates trained again), `plots`, `report` and `run_dir` (what the run directory holds), and `search` (the
stage itself: check, run, write).
"""
