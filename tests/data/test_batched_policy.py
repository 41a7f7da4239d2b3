"""Batched TrivialAugmentWide and random erasing against torchvision's, image by image: the same draws and pixels."""

import time

import pytest
import torch

from resnetlab.data.batched_policy import BatchedTrivialAugmentWide, PIXEL_OPS
from resnetlab.data.image_policies import ImageAugment, _each_seeded, image_seeds

BLENDS = ("Color", "Contrast", "Sharpness")  # torchvision's fused multiply-add, emulated: within one level


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    ramp = torch.arange(32).view(1, 32) * 3 + torch.arange(32).view(32, 1) * 4  # smooth images, flat regions
    images[: n // 4] = ramp.clamp(0, 255).to(torch.uint8).expand(3, 32, 32)
    images[n // 4] = 77  # a constant image: auto-contrast's and equalize's edge case
    return images


def test_every_op_gives_torchvisions_pixels_under_each_images_seed():
    images, policy = _images(500), BatchedTrivialAugmentWide()
    seeds = image_seeds(3, 1, torch.arange(len(images)), 0xA0A0)
    ours = policy(images, seeds)
    theirs = torch.stack(_each_seeded(policy.policy, images, seeds))
    drawn = [policy.draw(s, 32, 32) for s in seeds]
    assert {name for name, _ in drawn} == set(policy.space)  # every op of torchvision's table was met
    assert len({m for name, m in drawn if name == "Rotate"}) > 20  # and many magnitudes, both signs
    for i, (name, magnitude) in enumerate(drawn):
        diff = (ours[i].int() - theirs[i].int()).abs()
        assert int(diff.max()) <= (1 if name in BLENDS else 0), (name, magnitude)
    assert float((ours != theirs).float().mean()) < 1e-3


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 24, 40)])
def test_one_channel_and_oblong_images_channels_last_too(shape):
    images = torch.randint(0, 256, (300, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    policy, seeds = BatchedTrivialAugmentWide(), list(range(1000, 1300))
    ours = policy(images.contiguous(memory_format=torch.channels_last), seeds)
    theirs = torch.stack(_each_seeded(policy.policy, images, seeds))
    drawn = [policy.draw(s, *shape[1:]) for s in seeds]
    assert {name for name, _ in drawn} == set(policy.space)
    for i, (name, _) in enumerate(drawn):
        assert int((ours[i].int() - theirs[i].int()).abs().max()) <= (1 if name in BLENDS else 0), name


def test_it_is_what_image_augment_runs_on_batches_and_only_for_trivialaugment():
    images, seeds = _images(8), list(range(8))
    augment = ImageAugment("trivialaugmentwide", small=True)
    assert augment.batched is not None and ImageAugment("randaugment").batched is None
    assert torch.equal(augment.apply_policy(images, seeds), augment.batched(images, seeds))
    assert set(PIXEL_OPS) | {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} >= set(augment.batched.space)


def test_it_is_faster_than_per_image_on_a_cifar_batch():
    images, augment = _images(128), ImageAugment("trivialaugmentwide", small=True)
    per_image = lambda x, s: torch.stack(_each_seeded(augment.policy, x, s))  # noqa: E731
    times = {"per image": [], "batched": []}
    for epoch in range(6):  # alternated, the first round warms the maps' cache
        seeds = image_seeds(0, epoch, torch.arange(128), 0xA0A0)
        for name, fn in (("per image", per_image), ("batched", augment.batched)):
            start = time.perf_counter()
            fn(images, seeds)
            times[name].append(time.perf_counter() - start)
    best = {name: min(t[1:]) * 1e3 for name, t in times.items()}
    print(f"TrivialAugmentWide on 128 CIFAR images: per image {best['per image']:.1f} ms, "
          f"batched {best['batched']:.1f} ms ({best['per image'] / best['batched']:.1f}x)")
    assert best["batched"] * 1.5 < best["per image"]


def test_random_erasing_erases_torchvisions_boxes_under_each_images_seed():
    x = torch.randn(300, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    augment, seeds = ImageAugment(erase=0.5), image_seeds(0, 2, torch.arange(300), 0xE5E5)
    ours = augment.apply_erase(x, seeds)
    theirs = torch.stack(_each_seeded(augment.erase, x, seeds))
    assert torch.equal(ours, theirs)
    erased = (ours == 0).flatten(1).any(1)
    assert 100 < int(erased.sum()) < 200  # p = 0.5
    assert torch.equal(augment.apply_erase(x[7], seeds[7:8]), theirs[7])  # one streamed image: the same draws
