"""Runtime settings: device choice and its errors, the allocator switch, memory layout of models and batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from effnet.nas.errors import SettingError
from effnet.nas.study.study_config import StudyConfig
from effnet.nas.training.allocator import ALLOCATOR_ENV, MMAP_THRESHOLD
from effnet.nas.training.runtime import place_batch, place_model, resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_cpu_without_cuda(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert StudyConfig(run_dir="r", name="s", device="auto").worker_device() == "cpu"


def test_auto_is_cuda_with_cuda(two_gpus):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("CUDA:1") == torch.device("cuda", 1)


@pytest.mark.parametrize(
    "name, message",
    [
        ("cuda", "device 'cuda': no CUDA device is available here; use cpu or auto"),
        ("cuda:0", "no CUDA device is available here"),
        ("tpu", "unknown device; use auto, cpu, cuda or cuda:N"),
        ("cuda:x", "`cuda` or `cuda:N` with N a number"),
    ],
)
def test_device_errors_without_cuda(no_cuda, name, message):
    with pytest.raises(SettingError, match=message):
        resolve_device(name)


def test_device_index_beyond_the_visible_gpus(two_gpus):
    with pytest.raises(SettingError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_workers_refuse_a_numbered_gpu(two_gpus):
    """Workers take the visible GPUs in turn; `cuda:1` would silently be ignored, so it is refused."""
    assert StudyConfig(run_dir="r", name="s", device="cuda").worker_device() == "cuda"
    with pytest.raises(SettingError, match="CUDA_VISIBLE_DEVICES"):
        StudyConfig(run_dir="r", name="s", device="cuda:1")


def test_model_and_batch_are_channels_last_by_default():
    model = place_model(nn.Conv2d(3, 8, 3), torch.device("cpu"))
    assert model.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.weight.is_contiguous()
    batch = place_batch(torch.randn(2, 3, 8, 8), torch.device("cpu"))
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()
    plain = place_batch(torch.randn(2, 3, 8, 8), torch.device("cpu"), channels_last=False)
    assert plain.is_contiguous()


ALLOCATOR_PROBE = (
    "import json, os; from effnet.nas.training.allocator import configure_allocator; "
    "print(json.dumps({'said': configure_allocator(), 'tunables': os.environ.get('GLIBC_TUNABLES')}))"
)


def allocator_in_fresh_process(**env: str) -> dict:
    """`configure_allocator` acts on the whole process, so each case gets its own interpreter."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in (ALLOCATOR_ENV, "GLIBC_TUNABLES", "LD_PRELOAD") and not k.startswith("MALLOC_")
    }
    done = subprocess.run(
        [sys.executable, "-c", ALLOCATOR_PROBE],
        env=clean | env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the tuned allocator is glibc's")
def test_allocator_is_tuned_by_default_and_exported_to_children():
    result = allocator_in_fresh_process()
    assert result["said"].startswith("glibc heap")
    assert f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}" in result["tunables"]


def test_allocator_switched_off_leaves_the_process_alone():
    result = allocator_in_fresh_process(**{ALLOCATOR_ENV: "system"})
    assert result["said"] == f"system ({ALLOCATOR_ENV}=system)"
    assert result["tunables"] is None


def test_allocator_respects_what_the_environment_chose():
    result = allocator_in_fresh_process(MALLOC_MMAP_THRESHOLD_="65536")
    assert result["said"] == "MALLOC_*_ variables from the environment"
    assert result["tunables"] is None


def test_the_command_lines_filter_drops_torchs_cuda_toolkit_notice_and_nothing_else():
    """torch's compiler imports `torch.utils.cpp_extension`, which warns "No CUDA runtime is found, using
    CUDA_HOME=..." on any machine with a CUDA toolkit and no GPU: noise on a CPU training. `effnet train
    --compile` filters it; torch's other warnings still reach a handler, and the library's `compile_model` leaves
    torch's logs as they are."""
    import logging

    from effnet.nas.training import runtime

    log = logging.getLogger("torch.utils.cpp_extension")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    filters = list(log.filters)
    try:
        runtime.compile_model(nn.Linear(2, 2), enabled=True)  # lazy: nothing is compiled until the first call
        assert log.filters == filters
        runtime.silence_cuda_toolkit_notice()
        runtime.silence_cuda_toolkit_notice()  # once is enough, and twice adds nothing
        assert len(log.filters) == len(filters) + 1
        log.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local/cuda")
        log.warning("Error checking compiler version for %s", "c++")
    finally:
        log.removeHandler(handler)
        log.filters[:] = filters
    assert seen == ["Error checking compiler version for c++"]
