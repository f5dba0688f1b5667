"""Accuracy proxies: their data, short training (learns, deterministic, reports, fails on NaN), zero-cost scores."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from effnet.nas.data.sources import proxy_data
from effnet.nas.errors import InputError, SettingError
from effnet.nas.inputs import parse_yaml
from effnet.nas.net.spec_file import spec_from_dict
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.data import load_proxy_data
from effnet.nas.proxies.factory import make_proxy
from effnet.nas.proxies.proxy import ProxyFailure
from effnet.nas.proxies.zero_cost import positive_score

from images import jpeg_folder

TINY = """
name: tiny
resolution: 224
num_classes: 1000
dropout: 0.0
drop_connect: 0.0
stem: {out_channels: 8, kernel: 3, stride: 2}
stages:
- {block: mbconv, repeats: 1, kernel: 3, stride: 1, expand: 1, out_channels: 8, se_ratio: 0.25, skip: true}
- {block: mbconv, repeats: 2, kernel: 3, stride: 2, expand: 3, out_channels: 16, se_ratio: 0.0, skip: true}
head: {out_channels: 32}
"""


def tiny_spec(**changes):
    return spec_from_dict(parse_yaml(TINY, "tiny"), "tiny").replace(**changes)


@pytest.fixture(scope="module")
def synthetic():
    return proxy_data("synthetic", 16, seed=0)


ONE_THREAD = ProxyRuntime(threads=1)


def fast(**changes) -> ProxyConfig:
    """A tiny network learns the synthetic patterns within 2 epochs at lr 0.01 (every seed tried)."""
    return ProxyConfig(**{"data": "synthetic", "epochs": 3, "resolution": 16, "batch_size": 32, "lr": 0.01, **changes})


# -- data and construction --------------------------------------------------------------------------


def test_proxy_data_follow_the_settings_and_report_decoding_as_preparing(tmp_path):
    """2 classes of 6 files, 4 held out and 6 of the other 8 trained on, each split decoded into the cache in
    one batch (64 images a batch)."""
    jpeg_folder(tmp_path / "data", classes=2, per_class=6)
    events = []
    config = ProxyConfig(data=str(tmp_path / "data"), resolution=16, val_images=4, train_images=6)
    data = load_proxy_data(config, ProxyRuntime(cache_dir=tmp_path / "cache", loader_workers=0), events.append)
    assert (len(data.train), len(data.val), data.resolution) == (6, 4, 16)
    assert [(e.done, e.total, e.preparing) for e in events] == [(6, 6, True), (4, 4, True)]
    assert events[0].status.startswith("decoding 6 images at ")


def test_a_proxy_over_data_at_another_resolution_is_refused_as_bad_input(synthetic):
    with pytest.raises(InputError, match="data are at 16 px but the proxy trains at 32 px"):
        make_proxy(fast(resolution=32), synthetic, ONE_THREAD)


# -- train ----------------------------------------------------------------------------------------


def test_train_proxy_learns_well_above_chance_and_reports_every_epoch(synthetic):
    reports = []
    accuracy = make_proxy(fast(), synthetic, ONE_THREAD).score(tiny_spec(), lambda e, a: reports.append((e, a)))
    assert accuracy > 0.9  # 4 balanced classes: chance is 0.25
    assert [e for e, _ in reports] == [1, 2, 3]
    assert reports[-1][1] == accuracy
    assert all(0.0 <= a <= 1.0 for _, a in reports)


def test_train_proxy_is_deterministic_for_a_seed(synthetic):
    settings = fast(epochs=1, max_train_batches=3)
    first = make_proxy(settings, synthetic, ONE_THREAD).score(tiny_spec())
    second = make_proxy(settings, synthetic, ONE_THREAD).score(tiny_spec())
    assert first == second
    torch.manual_seed(123)  # the proxy seeds itself and leaves the caller's generator alone
    before = torch.random.get_rng_state()
    make_proxy(settings, synthetic, ONE_THREAD).score(tiny_spec())
    assert torch.equal(before, torch.random.get_rng_state())


def test_trial_pruned_raised_in_report_propagates(synthetic):
    def report(epoch, accuracy):
        raise optuna.TrialPruned(f"pruned at {epoch}")

    with pytest.raises(optuna.TrialPruned, match="pruned at 1"):
        make_proxy(fast(max_train_batches=1), synthetic, ONE_THREAD).score(tiny_spec(), report)


def test_nan_loss_raises_proxy_failure(synthetic):
    with pytest.raises(ProxyFailure, match=r"loss became NaN at epoch 1 step \d+"):
        make_proxy(fast(lr=1e30, epochs=1), synthetic, ONE_THREAD).score(tiny_spec())


def test_unknown_proxy_and_bad_settings_are_setting_errors():
    with pytest.raises(
        SettingError, match="proxy must be one of train, supernet, zero-cost, naswot, synflow, got 'magic'"
    ):
        fast(name="magic")
    with pytest.raises(SettingError, match="proxy_epochs must be at least 1, got 0"):
        fast(epochs=0)
    with pytest.raises(SettingError, match="supernet_epochs must be at least 1, got 0"):
        fast(supernet_epochs=0)
    kernels = "supernet_kernels must be one of shared, separate, transformed, got 'elastic'"
    with pytest.raises(SettingError, match=kernels):
        fast(supernet_kernels="elastic")
    with pytest.raises(SettingError, match="supernet_recipe must be one of uniform, sandwich, got 'bignas'"):
        fast(supernet_recipe="bignas")
    with pytest.raises(SettingError, match="supernet_ops must be one of separate, nested, got 'fair'"):
        fast(supernet_ops="fair")


def test_only_the_supernet_proxy_records_the_supernet_settings():
    """A study of another proxy keeps the fingerprint it was created with before the supernet existed."""
    assert sorted(fast().fingerprint()) == [
        "augment",
        "batch_size",
        "data",
        "epochs",
        "lr",
        "max_train_batches",
        "name",
        "resolution",
        "train_images",
        "val_images",
        "weight_decay",
    ]
    supernet = fast(name="supernet", supernet_epochs=7, supernet_kernels="shared", supernet_recipe="sandwich")
    settings = supernet.fingerprint()
    assert (settings["supernet_epochs"], settings["supernet_kernels"], settings["supernet_recipe"]) == (
        7,
        "shared",
        "sandwich",
    )
    assert "supernet_ops" not in settings  # separate, the one way before it was a choice: its studies resume
    assert fast(name="supernet", supernet_ops="nested").fingerprint()["supernet_ops"] == "nested"


# -- zero-cost ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["zero-cost", "synflow"])
def test_zero_cost_scores_are_finite_positive_and_tell_networks_apart(synthetic, name):
    proxy = make_proxy(fast(name=name), synthetic, ONE_THREAD)
    small = proxy.score(tiny_spec())
    wide = proxy.score(tiny_spec(head=tiny_spec().head.__class__(out_channels=128)))
    assert math.isfinite(small) and small > 0
    assert math.isfinite(wide) and wide > 0
    assert wide != small
    assert proxy.score(tiny_spec()) == small  # deterministic


def test_naswot_kernel_matches_hand_count_for_a_single_relu():
    """One ReLU over 4 units, 2 images: codes 1100 and 1010 share 2 bits, so K = [[4, 2], [2, 4]], det 12."""
    from effnet.nas.proxies.zero_cost import NaswotProxy

    class OneReLU(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = torch.nn.ReLU()

        def forward(self, x):
            return self.act(x)

    data = proxy_data("synthetic", 16, seed=0)
    proxy = NaswotProxy(data, fast(batch_size=2), ONE_THREAD)
    proxy.minibatch = lambda device: torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0]])
    assert proxy.log_score(OneReLU(), torch.device("cpu")) == pytest.approx(math.log(12.0))


def test_positive_score_transform():
    assert positive_score(700.0) == 700.0  # log(1 + e^700) = 700 to double precision
    assert positive_score(0.0) == pytest.approx(math.log(2.0))
    assert 0 < positive_score(-math.inf) < 1e-9
    with pytest.raises(ProxyFailure):
        positive_score(math.nan)
