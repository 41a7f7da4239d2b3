"""Batch transforms (issue 42): mixup and cutmix as torchvision's references define them, drawn from the
generator of (seed, step, rank) alone."""

import types

import pytest
import torch

from resnetlab.data.batch_transforms import BatchTransforms
from resnetlab.data.image_policies import ImageAugment
from resnetlab.data.batch_transforms import cutmix, mixup, step_generator
from resnetlab.data.batch import Batch


def _batch(n=8, classes=10):
    g = torch.Generator().manual_seed(0)
    return Batch(torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g))


def test_mixup_blends_each_image_with_its_neighbour_and_mixes_the_targets_alike():
    batch = _batch()
    lam = float(step_generator(3, 7).beta(0.2, 0.2))
    out = mixup(batch, 0.2, 10, step_generator(3, 7))
    assert torch.allclose(out.images, lam * batch.images + (1 - lam) * batch.images.roll(1, 0))
    onehot = torch.nn.functional.one_hot(batch.labels, 10).float()
    assert torch.allclose(out.targets, lam * onehot + (1 - lam) * onehot.roll(1, 0))
    assert torch.allclose(out.targets.sum(1), torch.ones(8))
    assert torch.equal(out.labels, batch.labels if lam >= 0.5 else batch.labels.roll(1, 0))


def test_cutmix_pastes_a_box_and_its_share_is_the_targets_share():
    batch = _batch()
    out = cutmix(batch, 1.0, 10, step_generator(0, 1))
    pasted = (out.images != batch.images).any(1)[0].float().mean().item()  # share of image 0 taken from image 7
    own = out.targets[0, batch.labels[0]].item() if batch.labels[0] != batch.labels[7] else None
    assert 0 < pasted < 1
    if own is not None:
        assert own == pytest.approx(1 - pasted, abs=1e-6)


def test_a_steps_draws_are_a_function_of_seed_step_and_rank_alone():
    cfg = types.SimpleNamespace(seed=5, mixup_alpha=0.2, cutmix_alpha=1.0)
    transforms = BatchTransforms(cfg, 10)
    a, b = transforms(_batch(), 11), BatchTransforms(cfg, 10)(_batch(), 11)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert not torch.equal(transforms(_batch(), 12).images, a.images)
    assert not torch.equal(BatchTransforms(cfg, 10, rank=1)(_batch(), 11).images, a.images)
    # with both switched on, each batch takes one of them, each about half the time
    kinds = [int((transforms(_batch(), s).images != _batch().images).all()) for s in range(200)]
    assert 60 < sum(kinds) < 140  # mixup changes every pixel; cutmix only a box


def test_off_leaves_the_batch_as_it_is():
    cfg = types.SimpleNamespace(seed=0, mixup_alpha=0.0, cutmix_alpha=0.0)
    batch = _batch()
    assert not BatchTransforms(cfg, 10) and BatchTransforms(cfg, 10)(batch, 3) is batch


@pytest.mark.parametrize("policy", ["trivialaugmentwide", "randaugment", "autoaugment"])  # a batch, and one image
def test_image_policies_draw_per_image_from_its_own_seed_and_leave_the_global_generator_alone(policy):
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    augment = ImageAugment(policy, 0.5, small=True)
    state = torch.get_rng_state()
    seeds = list(range(100, 116))
    a = augment.apply_policy(images, seeds)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, augment.apply_policy(images, seeds)) and a.dtype == torch.uint8
    assert not torch.equal(a, augment.apply_policy(images, [s + 1 for s in seeds]))
    assert torch.equal(a[3], augment.apply_policy(images[3], seeds[3:4]))  # one image alone: the same draws
    erased = augment.apply_erase(torch.ones(16, 3, 32, 32), seeds)
    assert 0 < int((erased == 0).flatten(1).any(1).sum()) < 16  # p = 0.5: some images erased, not all
    with pytest.raises(KeyError):
        ImageAugment("augmix")
