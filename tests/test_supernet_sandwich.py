"""The sandwich recipe of the supernet's training: its paths, its in-place distillation, its one step."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from effnet.nas.data.loader import sample_seed
from effnet.nas.data.sources import proxy_data
from effnet.nas.net.flops import analytic_flops
from effnet.nas.proxies.config import ProxyConfig, ProxyRuntime
from effnet.nas.proxies.supernet import Supernet
from effnet.nas.proxies.supernet_recipes import band_extremes, distillation_loss, sandwich_backward, space_extremes
from effnet.nas.proxies.supernet_training import SupernetSetup, draw_path, train_supernet
from effnet.nas.space.load import load_space
from effnet.nas.space.reach import space_reach

DATA = Path(__file__).parent / "data"
SPACE = load_space(DATA / "supernet_space.yaml")
TINY = load_space(DATA / "tiny_space.yaml")  # no pooling skip: space_reach's extremes are the whole space's


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def drawer(space, low=0.0, high=1e12):
    return lambda rng: draw_path(space, rng, low, high)


def test_space_extremes_are_the_space_reach():
    """space_reach finds the least and greatest FLOPs by dynamic programming over channel counts."""
    largest, smallest = space_extremes(TINY)
    reach = space_reach(TINY)
    assert (analytic_flops(largest), analytic_flops(smallest)) == (reach.max_flops, reach.min_flops)
    Supernet(TINY, 32, 4).check(largest)  # paths the supernet has
    Supernet(TINY, 32, 4).check(smallest)


def test_space_extremes_are_the_band_extremes_where_the_band_holds_them():
    largest, smallest = space_extremes(SPACE)
    rng = random.Random(5)
    drawn = [analytic_flops(SPACE.random_spec(rng)) for _ in range(500)]
    assert analytic_flops(smallest) <= min(drawn) and analytic_flops(largest) >= max(drawn)
    assert tuple(band_extremes(SPACE, 0, 1e12, drawer(SPACE), seed=0)) == (largest, smallest)


def test_band_extremes_lie_in_the_band_at_its_edges():
    rng = random.Random(1)
    flops = sorted(analytic_flops(SPACE.random_spec(rng)) for _ in range(400))
    low, high = flops[100], flops[300]  # the middle half of the space: its extremes lie outside
    sandwich = band_extremes(SPACE, low, high, drawer(SPACE, low, high), seed=0)
    big, small = analytic_flops(sandwich.largest), analytic_flops(sandwich.smallest)
    assert low <= small < big <= high
    others = sorted(analytic_flops(draw_path(SPACE, random.Random(seed), low, high)) for seed in range(100, 200))
    assert big >= others[89] and small <= others[10]  # beyond nine in ten of other in-band draws
    again = band_extremes(SPACE, low, high, drawer(SPACE, low, high), seed=0)
    assert tuple(again) == tuple(sandwich)  # the same paths when a training resumes


def test_distillation_targets_are_the_teachers_detached_predictions():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 4, generator=generator, requires_grad=True)
    teacher = torch.randn(5, 4, generator=generator, requires_grad=True)
    distillation_loss(student, teacher).backward()
    assert teacher.grad is None  # the teacher is not taught by its student
    # soft cross-entropy's gradient: (softmax(student) - softmax(teacher)) / batch
    expected = (student.detach().softmax(1) - teacher.detach().softmax(1)) / 5
    torch.testing.assert_close(student.grad, expected)


def test_a_sandwich_step_is_the_teachers_label_loss_plus_the_students_soft_losses():
    """Against the same sum written out with the teacher's predictions computed apart, as constants: the
    gradients differ if the students' losses reach the teacher's weights through its outputs."""
    torch.manual_seed(0)
    model = Supernet(SPACE, 16, 4, kernels="separate").train()
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(8, 3, 16, 16, generator=generator), torch.randint(0, 4, (8,), generator=generator)
    sandwich = band_extremes(SPACE, 0, 1e12, drawer(SPACE), seed=0)
    paths = sandwich.paths(random.Random(3), drawer(SPACE))
    loss = sandwich_backward(model, images, labels, paths, torch.autocast("cpu", enabled=False))

    with torch.no_grad():
        soft = twin(images, paths[0]).softmax(1)
    total = F.cross_entropy(twin(images, paths[0]), labels)
    for path in paths[1:]:
        total = total - (soft * twin(images, path).log_softmax(1)).sum(1).mean()
    total.backward()
    torch.testing.assert_close(loss, F.cross_entropy(twin(images, paths[0]), labels).detach())
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_a_sandwich_step_trains_the_ops_of_all_four_paths(tmp_path):
    data = proxy_data("synthetic", 16, seed=0)
    config = ProxyConfig(
        name="supernet",
        data="synthetic",
        resolution=16,
        batch_size=32,
        supernet_epochs=1,
        max_train_batches=1,
        supernet_recipe="sandwich",
    )
    setup = SupernetSetup(SPACE, 0.0, 1e12, tmp_path)
    torch.manual_seed(0)  # the trainer's initialisation (seed 0)
    before = setup.build(config, data)
    trained = train_supernet(setup, config, data, ProxyRuntime(threads=1))
    after = setup.build(config, data)
    after.load_state_dict(torch.load(trained.path, weights_only=True)["model"])
    draw = drawer(SPACE)
    paths = band_extremes(SPACE, 0, 1e12, draw, seed=0).paths(random.Random(sample_seed(0, 1, 0)), draw)
    assert len({repr(p.stages) for p in paths}) == 4
    used = set()
    for spec in paths:
        old, new = before.state_for(spec), after.state_for(spec)
        weights = [k for k in old if k.endswith(".weight") and "bn" not in k and old[k].dim() > 1]
        assert weights and all(not torch.equal(old[k], new[k]) for k in weights), spec
        used |= {t.untyped_storage().data_ptr() for t in after.state_for(spec).values()}
    unused = [(n, p) for n, p in after.named_parameters() if p.untyped_storage().data_ptr() not in used]
    assert unused  # ops none of the four paths ran: no gradient, so not even decayed
    old = dict(before.named_parameters())
    assert all(torch.equal(old[n], p) for n, p in unused)
