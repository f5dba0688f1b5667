"""BatchNorm folded into the convolution before it: the same function in eval mode, one pass less per layer.

In eval mode a BatchNorm is an affine map per channel, y = (x - mean) / sqrt(var + eps) * gamma + beta, so it
folds into the conv that feeds it: weights scaled by gamma / sqrt(var + eps) per output channel and a bias of
beta - mean * gamma / sqrt(var + eps). The folded network computes what the eval-mode network computes, up to
float rounding (the product is rounded once into the weights instead of applied to every activation), and
saves the BatchNorm's read and write of every activation. It is for inference only: the folded layers have no
running statistics to train.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from effnet.nas.net.model import ConvBNAct


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """An eval-mode, gradient-free copy of `model` (a network `build_model` made) with each conv-BatchNorm pair
    folded into one biased conv; the BatchNorm's place holds an `nn.Identity`. The model itself is unchanged."""
    folded = copy.deepcopy(model).eval().requires_grad_(False)
    for module in folded.modules():
        if isinstance(module, ConvBNAct) and isinstance(module[1], nn.BatchNorm2d):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"{left[0]}: a BatchNorm outside a conv-BN-activation layer cannot be folded")
    return folded
