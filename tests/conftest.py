from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from effnet.cli.app import app

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def b0_yaml() -> Path:
    """The reference EfficientNet-B0 spec shipped in configs/."""
    return REPO_ROOT / "configs" / "efficientnet-b0.yaml"


@pytest.fixture
def cli():
    """Invoke `effnet ARGS...` in-process; returns click's Result (exit_code, stdout, stderr, output)."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def one_torch_thread():
    """fvcore runs a real forward; on a shared 2-core machine one torch thread is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
