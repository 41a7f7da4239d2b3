"""Batched policies and random erasing against torchvision's, image by image: the same draws and pixels."""

import time

import pytest
import torch

from torchvision.transforms import v2

from resnetlab.data.batched_policy import BatchedPolicy, GEOMETRIC_OPS, PIXEL_OPS, batched
from resnetlab.data.image_policies import ImageAugment, _each_seeded, image_seeds

BLENDS = ("Color", "Contrast", "Sharpness")  # torchvision's fused multiply-add, emulated: within one level


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    ramp = torch.arange(32).view(1, 32) * 3 + torch.arange(32).view(32, 1) * 4  # smooth images, flat regions
    images[: n // 4] = ramp.clamp(0, 255).to(torch.uint8).expand(3, 32, 32)
    images[n // 4] = 77  # a constant image: auto-contrast's and equalize's edge case
    return images


POLICIES = {"trivialaugmentwide": (v2.TrivialAugmentWide, 15), "randaugment": (v2.RandAugment, 1),
            "autoaugment-cifar": (lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10), 1),
            "autoaugment-imagenet": (lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET), 2)}


def _tolerance(ops: list[tuple[str, float]]) -> int:
    return 1 if any(name in BLENDS for name, _ in ops) else 0


@pytest.mark.parametrize("name", POLICIES)
def test_every_op_gives_torchvisions_pixels_under_each_images_seed(name):
    build, rotations = POLICIES[name]
    images, policy = _images(500), BatchedPolicy(build())
    seeds = image_seeds(3, 1, torch.arange(len(images)), 0xA0A0)
    ours = policy(images, seeds)
    theirs = torch.stack(_each_seeded(policy.policy, images, seeds))
    drawn = [policy.draw(s, 32, 32) for s in seeds]
    sub_policies = getattr(policy.policy, "_policies", None)  # AutoAugment's: the ops it can draw
    can_draw = {op for sub in sub_policies for op, *_ in sub} if sub_policies else set(policy.space)
    assert {op for ops in drawn for op, _ in ops} == can_draw  # every op met
    assert len({abs(m) for ops in drawn for op, m in ops if op == "Rotate"}) >= rotations  # and its magnitudes
    assert {m > 0 for ops in drawn for op, m in ops if op == "Rotate"} == {True, False}  # both signs
    for i, ops in enumerate(drawn):
        assert int((ours[i].int() - theirs[i].int()).abs().max()) <= _tolerance(ops), ops
    assert float((ours != theirs).float().mean()) < 1e-3


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 24, 40)])
def test_one_channel_and_oblong_images_channels_last_too(shape):
    images = torch.randint(0, 256, (300, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    policy, seeds = BatchedPolicy(v2.RandAugment()), list(range(1000, 1300))
    ours = policy(images.contiguous(memory_format=torch.channels_last), seeds)
    theirs = torch.stack(_each_seeded(policy.policy, images, seeds))
    drawn = [policy.draw(s, *shape[1:]) for s in seeds]
    assert {op for ops in drawn for op, _ in ops} == set(policy.space)
    for i, ops in enumerate(drawn):
        assert int((ours[i].int() - theirs[i].int()).abs().max()) <= _tolerance(ops), ops


@pytest.mark.parametrize("name", ["trivialaugmentwide", "randaugment", "autoaugment"])
def test_it_is_what_image_augment_runs_on_batches(name):
    images, seeds = _images(8), list(range(8))
    augment = ImageAugment(name, small=True)
    assert torch.equal(augment.apply_policy(images, seeds), augment.batched(images, seeds))
    assert set(PIXEL_OPS) | set(GEOMETRIC_OPS) >= set(augment.batched.space)


def test_a_policy_it_cannot_repeat_runs_per_image():
    assert ImageAugment("randaugment").batched is not None
    with pytest.raises(NotImplementedError):
        BatchedPolicy(v2.RandAugment(fill=3))  # _move fills with 0
    with pytest.raises(NotImplementedError):
        BatchedPolicy(v2.RandAugment(interpolation=v2.InterpolationMode.BILINEAR))  # pixels not moved, blended
    with pytest.raises(NotImplementedError):
        BatchedPolicy(v2.AugMix())
    changed = v2.AutoAugment()  # a torchvision whose sub-policies name an op its table lacks: found at once
    changed._policies = [(("Mosaic", 0.5, None), ("Mosaic", 0.5, None))]
    assert batched(changed) is None


@pytest.mark.parametrize("name", ["trivialaugmentwide", "randaugment", "autoaugment"])
def test_it_is_faster_than_per_image_on_a_cifar_batch(name):
    images, augment = _images(128), ImageAugment(name, small=True)
    per_image = lambda x, s: torch.stack(_each_seeded(augment.policy, x, s))  # noqa: E731
    times = {"per image": [], "batched": []}
    for epoch in range(6):  # alternated, the first round warms the maps' cache
        seeds = image_seeds(0, epoch, torch.arange(128), 0xA0A0)
        for how, fn in (("per image", per_image), ("batched", augment.batched)):
            start = time.perf_counter()
            fn(images, seeds)
            times[how].append(time.perf_counter() - start)
    best = {how: min(t[1:]) * 1e3 for how, t in times.items()}
    print(f"{name} on 128 CIFAR images: per image {best['per image']:.1f} ms, "
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
