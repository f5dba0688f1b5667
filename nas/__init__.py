"""The search half of effnet, in layers: each imports only from the ones above it in this list.

- the loose modules (the foundation): `errors` (the library's exceptions), `checks` (setting values),
  `choices` (the words each setting takes, which the library checks and the command line offers),
  `units` (sizes like 400M), `inputs` (reading users' YAML within limits), `files` (atomic writing),
  `outputs` (where effnet may write), `record` (the run record every command writes), `redact` (no
  password in any output), `resources` (shipped configs), `memory` and `cpus` (what the machine has
  free), `signals` (stopping cleanly on Ctrl-C or SIGTERM), `progress` (the one progress event).
- `effnet.nas.net`: the network language and its counting (spec, block layout, model builder,
  FLOP and parameter counters, the reference rounding, BatchNorm folding).
- `effnet.nas.data`: image data for proxies and training.
- `effnet.nas.training`: training (the paper's recipe, EMA, precise BatchNorm, checkpoints, pretrained
  weights, device and allocator settings).
- `effnet.nas.space`: the search space (its choices, space files, its FLOPs reach, fitting to the data).
- `effnet.nas.latency`: a network's latency measured where it runs (torch, folded, onnxruntime; CPU or CUDA).
- `effnet.nas.proxies`: accuracy proxies (short training, zero-cost scores, the supernet).
- `effnet.nas.study`: studies (the one study runner that search and grid share: storage, settings
  fingerprint, seeds, workers, stale trials; the architecture search, its rewards and report; the
  proxies' rank check).
- deployment: `export` (ONNX, TorchScript, foreign state dicts), `inference` (a trained network back with
  its classes and transform), `predict` (class probabilities for image files).
"""
