"""Latency measured where the network runs: each runtime runs the spec's network (its outputs are the eval model's),
the summary is the runs' median, 90th percentile and spread, the threads are the caller's again after, bad settings
are refused naming the setting, and `effnet describe --latency` reports it. No test compares timings."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from refusals import refusal_stdout_is_right

from effnet.nas.choices import LATENCY_RUNTIMES
from effnet.nas.cpus import usable_cores
from effnet.nas.errors import InputError, SettingError
from effnet.nas.latency import measure
from effnet.nas.latency.measure import measure_latency
from effnet.nas.latency.runtimes import prepare, random_images
from effnet.nas.net.model import build_model
from effnet.nas.net.spec_file import load_spec

TINY = Path(__file__).parent / "data" / "tiny_base.yaml"
"""Three stages at 32 px: a run takes about a millisecond."""
FEW = {"warmup": 1, "repeats": 3}


@pytest.fixture(scope="module")
def tiny():
    return load_spec(TINY)


@pytest.mark.parametrize("runtime", LATENCY_RUNTIMES)
def test_each_runtime_measures_and_says_what_it_measured(tiny, runtime):
    started = time.perf_counter()
    latency = measure_latency(tiny, runtime, batch=2, threads=1, **FEW)
    elapsed = time.perf_counter() - started
    assert 0 < latency.median_s <= latency.p90_s
    assert latency.cv >= 0
    # at least two of the three runs took the median or longer, and all of them ran inside the call: seconds, not ms
    assert 2 * latency.median_s <= elapsed
    assert (latency.runtime, latency.device, latency.batch, latency.threads) == (runtime, "cpu", 2, 1)
    assert (latency.repeats, latency.resolution) == (3, 32)


def test_the_summary_is_the_median_90th_percentile_and_spread_of_the_runs(tiny, monkeypatch):
    runs = [0.011, 0.010, 0.013, 0.010, 0.030, 0.012, 0.010, 0.011, 0.014, 0.010]
    monkeypatch.setattr(measure, "time_runs", lambda prepared, warmup, repeats, report: list(runs))
    latency = measure_latency(tiny, "torch", threads=1, warmup=0, repeats=len(runs))
    assert latency.median_s == pytest.approx(np.median(runs))
    assert latency.p90_s == pytest.approx(np.percentile(runs, 90))  # numpy's linear interpolation
    assert latency.cv == pytest.approx(np.std(runs, ddof=1) / np.mean(runs))
    assert latency.noisy  # one run of 30 ms among 10-14 ms ones: a spread of 0.45


def test_the_runtimes_run_the_same_network_on_the_same_images(tiny):
    """The folded network and its ONNX export compute what the eval model as built computes, on the images the
    measurement times; the model handed in stays in training mode, on its own weights."""
    model = build_model(tiny)
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    shape = (tiny.in_channels, tiny.resolution, tiny.resolution)
    with torch.no_grad():
        expected = model.eval()(random_images(3, shape))
    model.train()
    for runtime in LATENCY_RUNTIMES:
        out = prepare(model, shape, runtime, torch.device("cpu"), 3, 1).run()
        scale = float(expected.abs().max())
        assert float((out - expected).abs().max()) <= 1e-4 * scale, runtime  # float rounding, as the export's check
    assert model.training
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())


def test_threads_are_set_for_the_runs_and_put_back_after(tiny):
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    if wanted > usable_cores():
        pytest.skip("one core here: no other thread count to set")
    during = []
    latency = measure_latency(
        tiny, "torch", threads=wanted, **FEW, on_progress=lambda progress: during.append(torch.get_num_threads())
    )
    assert set(during) == {wanted} and latency.threads == wanted
    assert torch.get_num_threads() == before
    assert measure_latency(tiny, "torch", **FEW).threads == before  # None: the process's setting, as it was


def test_a_model_is_measured_at_its_spec_and_random_state_is_left_alone(tiny):
    model = build_model(tiny.replace(resolution=48))
    state = torch.random.get_rng_state()
    latency = measure_latency(model, "folded", threads=1, **FEW)
    assert latency.resolution == 48
    assert torch.equal(torch.random.get_rng_state(), state)
    measure_latency(tiny, "folded", threads=1, **FEW)  # a spec is built with seeded weights, in a forked generator
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize(
    "settings, setting",
    [
        ({"runtime": "tensorrt"}, "runtime"),
        ({"batch": 0}, "batch"),
        ({"batch": 1.5}, "batch"),
        ({"threads": 0}, "threads"),
        ({"threads": 10**6}, "threads"),
        ({"repeats": 1}, "repeats"),
        ({"warmup": -1}, "warmup"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(tiny, settings, setting):
    with pytest.raises(SettingError) as refused:
        measure_latency(tiny, **settings)
    assert refused.value.setting == setting


def test_an_unknown_runtime_is_told_the_known_ones(tiny):
    with pytest.raises(SettingError, match="must be one of folded, torch, onnxruntime, got 'tensorrt'"):
        measure_latency(tiny, "tensorrt")


def test_what_is_not_a_network_is_refused(tiny):
    with pytest.raises(SettingError) as refused:
        measure_latency(str(TINY))
    assert refused.value.setting == "spec_or_model"


def test_a_batch_the_memory_cannot_hold_is_refused_with_what_fits(tiny, monkeypatch):
    monkeypatch.setattr(measure, "available_memory", lambda: 2**30)
    # tiny at 32 px: under 100,000 values an image (3,072 of them the image), 4 bytes each, so 1 GiB holds thousands
    measure.check_batch_memory(tiny, 1000)
    with pytest.raises(SettingError, match=r"^batch 1,?000,?000 .*use at most \d+$") as refused:
        measure.check_batch_memory(tiny.replace(resolution=64), 1_000_000)
    assert refused.value.setting == "batch"


def test_onnxruntime_not_installed_names_the_extra(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails; find_spec finds none
    with pytest.raises(InputError) as refused:
        measure_latency(tiny, "onnxruntime")
    assert str(refused.value) == "the onnxruntime runtime needs onnxruntime, not installed; pip install 'effnet[onnx]'"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_cuda_without_a_gpu_is_refused_naming_the_device(tiny):
    with pytest.raises(SettingError) as refused:
        measure_latency(tiny, device="cuda", **FEW)
    assert refused.value.setting == "device"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("runtime", ["torch", "folded"])
def test_cuda_runs_are_timed_by_events(tiny, runtime):
    started = time.perf_counter()
    latency = measure_latency(tiny, runtime, device="cuda", **FEW)
    assert 0 < latency.median_s <= latency.p90_s <= time.perf_counter() - started
    assert latency.device.startswith("cuda")


def test_describe_latency_json(cli):
    result = cli("describe", TINY, "--latency", "--repeats", "3", "--threads", "1", "--batch", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    latency = data["latency"]
    assert set(latency) == {
        "measured_s",
        "p90_s",
        "predicted_s",
        "runtime",
        "device",
        "batch",
        "threads",
        "repeats",
        "cv",
    }
    assert 0 < latency["measured_s"] <= latency["p90_s"]
    assert latency["predicted_s"] is None
    assert (latency["runtime"], latency["device"], latency["batch"], latency["threads"]) == ("folded", "cpu", 2, 1)
    assert latency["repeats"] == 3 and latency["cv"] >= 0
    assert len(data["warnings"]) == (1 if latency["cv"] > 0.10 else 0)
    assert data["flops"] > 0  # the description is all there


def test_describe_latency_table_and_noise_warning(cli, monkeypatch):
    monkeypatch.setattr(measure, "time_runs", lambda prepared, warmup, repeats, report: [0.001, 0.001, 0.003])
    result = cli("describe", TINY, "--latency", "--repeats", "3", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "Latency measured here" in result.stdout
    assert "1.00 ms" in result.stdout and "2.60 ms" in result.stdout  # median; p90 interpolated by hand: 1 + 0.8 * 2
    warning = result.stderr.strip()
    # by hand: mean 5/3 ms, sample standard deviation sqrt(4/3) ms, so 0.69
    assert warning.startswith("warning: the 3 timed runs varied by a coefficient of variation of 0.69")
    assert "close other programs" in warning and "--repeats" in warning


@pytest.mark.parametrize(
    "args, words",
    [
        (["--latency", "--runtime", "tensorrt"], "error: --runtime must be one of folded, torch, onnxruntime"),
        (["--latency", "--batch", "0"], "error: --batch must be at least 1"),
        (["--latency", "--threads", "0"], "error: --threads must be at least 1"),
        (["--runtime", "torch"], "error: --runtime is a setting of the latency measurement; add --latency"),
    ],
)
def test_describe_bad_latency_settings_are_one_line_and_exit_2(cli, args, words):
    result = cli("describe", TINY, *args, "--json")
    assert result.exit_code == 2
    assert result.stderr.startswith(words) and result.stderr.count("\n") == 1, result.stderr
    refusal_stdout_is_right(result)
