"""Initialisation as the TensorFlow reference does it, layer kind by layer kind, checked on the standard
deviation of the drawn weights.

The reference formulas, per kind (TensorFlow's efficientnet_model.py `conv_kernel_initializer`: normal with
std sqrt(2 / fan_out), fan_out = kernel_h * kernel_w * the kernel's last dimension; `dense_kernel_initializer`:
uniform within +-1/sqrt(units)):

- regular conv, kernel [k, k, in, out]: std sqrt(2 / (k^2 * out));
- depthwise conv, kernel [k, k, channels, 1] (depth multiplier 1): std sqrt(2 / k^2), whatever the channels;
- 1x1 convs (expand, project, head, squeeze-excitation, shortcut projection), kernel [1, 1, in, out]:
  std sqrt(2 / out);
- classifier, kernel [features, classes]: uniform within +-1/sqrt(classes), so std 1/sqrt(3 * classes); here
  never wider than +-sqrt(3 / features), which B0's 1000 classes on 1280 features are not (a few classes on a
  wide head are: the reference's bound started B1 on 5 classes at a loss of 4.6, ln 5 being 1.61).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import pytest
import torch
from torch import nn

from effnet.nas.net.model import build_model
from effnet.scaling.presets import reference_b0


def reference_std(conv: nn.Conv2d) -> tuple[str, float]:
    """The layer's kind and the reference's standard deviation for it, by the formulas above."""
    k = conv.kernel_size[0]
    if conv.groups > 1:
        assert conv.groups == conv.in_channels == conv.out_channels
        return f"depthwise {k}x{k}", math.sqrt(2 / k**2)
    if k == 1:
        name = "squeeze-excitation 1x1" if conv.bias is not None else "pointwise 1x1"
        return name, math.sqrt(2 / conv.out_channels)
    return f"regular {k}x{k}", math.sqrt(2 / (k**2 * conv.out_channels))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """The reference B0 with stages 2 and 3 as regular convs (kernels 3 and 5) and every stage on the pooling
    shortcut (whose projections are 1x1 convs): every layer kind the builder makes."""
    b0 = reference_b0()
    stages = list(b0.stages)
    stages[1] = dataclasses.replace(stages[1], block="conv", expand=1)
    stages[2] = dataclasses.replace(stages[2], block="conv", expand=1)
    spec = b0.replace(stages=tuple(dataclasses.replace(s, skip="pool") for s in stages))
    torch.manual_seed(0)
    return build_model(spec)


def test_every_conv_kind_has_the_references_standard_deviation(model):
    normalised: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        kind, std = reference_std(conv)
        weights = conv.weight.detach().flatten() / std
        # five standard errors of a sample standard deviation from n normal draws, 1/sqrt(2n)
        assert abs(weights.std().item() - 1) < 5 / math.sqrt(2 * weights.numel()), (name, kind)
        normalised[kind].append(weights)
        if conv.bias is not None:
            assert torch.count_nonzero(conv.bias) == 0, name
    assert set(normalised) == {
        "regular 3x3",
        "regular 5x5",
        "depthwise 3x3",
        "depthwise 5x5",
        "pointwise 1x1",
        "squeeze-excitation 1x1",
    }
    for kind, parts in normalised.items():
        weights = torch.cat(parts)
        assert abs(weights.std().item() - 1) < 5 / math.sqrt(2 * weights.numel()), kind
        assert abs(weights.mean().item()) < 5 / math.sqrt(weights.numel()), kind


def test_depthwise_std_does_not_shrink_with_the_channels(model):
    """The depthwise convs of B0's stage 6 (1152 channels, 5x5): std sqrt(2/25) = 0.283, not sqrt(2/(25*1152))."""
    depthwise = [
        m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 1152 and m.kernel_size == (5, 5)
    ]
    assert depthwise and all(abs(m.weight.std().item() - 0.2828) < 0.01 for m in depthwise)


def test_classifier_and_batch_norm(model):
    classifier = model.classifier
    bound = 1 / math.sqrt(1000)
    weights = classifier.weight.detach()
    assert weights.abs().max().item() <= bound
    # uniform(-b, b) has std b / sqrt(3); 1,280,000 draws put the sample std within 0.5 % of it
    assert weights.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.005)
    assert torch.count_nonzero(classifier.bias) == 0
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("classes", [2, 5, 10])
def test_a_few_classes_start_near_chance(classes, one_torch_thread):
    """Untrained, the network guesses: its cross-entropy is about ln(classes) (a uniform guess), whatever their
    number. The reference's bound, 1/sqrt(classes), gave B0 on 5 classes a loss near 4.6."""
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(reference_b0(), num_classes=classes, resolution=32)).train()
    assert model.classifier.weight.abs().max().item() <= math.sqrt(3 / 1280)  # B0's 1280 features
    images, labels = torch.randn(64, 3, 32, 32), torch.randint(0, classes, (64,))
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(images), labels).item()
    assert loss == pytest.approx(math.log(classes), abs=0.3)  # (the reference bound: +3 for 5 classes)
