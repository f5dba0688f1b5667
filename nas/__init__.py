"""The search half of effnet, grouped by concern.

- `effnet.nas.net`: the network language and its counting (spec, block layout, model builder,
  FLOP and parameter counters, the reference rounding).
- `effnet.nas.space`: the search space (its choices, space files, its FLOPs reach, fitting to the data).
- `effnet.nas.study`: searches and studies (rewards, the one study runner that search and grid
  share: storage, settings fingerprint, seeds, workers, stale trials; the proxies' rank check).
- `effnet.nas.data`: image data for proxies and training.
- `effnet.nas.training`: training (the paper's recipe, EMA, precise BatchNorm, checkpoints,
  device and allocator settings).
- `effnet.nas.proxies`: accuracy proxies (short training, zero-cost scores, the supernet).

Beside them: `errors` (the library's exception), `files` (safe reading, atomic writing), `record`
(the run record every command writes), `units` (sizes like 400M), `resources` (shipped configs) and `signals`
(stopping cleanly on Ctrl-C or SIGTERM).
"""
