"""Training a spec: the paper's recipe, EMA, precise BatchNorm, checkpoints, runtime settings, weights files.

One way down: `trainer` (`train_network`) wires `job` (`TrainConfig`, `TrainResult`), `recipe`, `distributed` and
`loop` (the epochs, over `batches`); the loop and the deploy layer read and write weights through `weights`
(effnet checkpoints, timm and torchvision state dicts), which reads files through `checkpoint`."""
