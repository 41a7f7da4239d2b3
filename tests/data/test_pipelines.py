import numpy as np
import pytest
import torch

from resnetlab.data import DeviceLoader, Normalization
from resnetlab.data.arrays import ArrayDataset
from resnetlab.data.dataset import Dataset
from resnetlab.data.device_loader import crop_flip
from resnetlab.data.imagenet import eval_transform, train_transform
from resnetlab.data.sources import recorded_training_split, split_for_training
from resnetlab.errors import UserError


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 255, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def identity_norm():
    return Normalization("channel", torch.zeros(3, 1, 1), torch.ones(3, 1, 1) / 255)


def test_zero_offset_returns_the_original_image():
    images, _ = _data(4)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    n = len(x)
    out = crop_flip(padded, torch.full((n,), 4), torch.full((n,), 4), torch.zeros(n, dtype=torch.bool), 32)
    assert torch.equal(out, x)
    flipped = crop_flip(padded, torch.full((n,), 4), torch.full((n,), 4), torch.ones(n, dtype=torch.bool), 32)
    assert torch.equal(flipped, x.flip(3))


def test_crops_stay_inside_the_padded_image():
    images, labels = _data()
    loader = DeviceLoader(images, labels, 64, "cpu", identity_norm(), augment=True, seed=3)
    for step in range(8):
        x, y, _ = loader.batch(step)
        assert x.shape == (64, 3, 32, 32)
        # each crop is a window of the padded original: the zero border is at most 4 pixels wide
        zero_rows = (x == 0).all(dim=(1, 3))
        assert zero_rows.sum(1).max() <= 4


def test_flips_about_half_and_labels_follow_images():
    images, labels = _data(2000)
    loader = DeviceLoader(images, labels, 500, "cpu", identity_norm(), augment=True, seed=1)
    _, _, _, flips = loader._epoch_plan(0)
    assert 0.45 < flips.float().mean() < 0.55
    perm = loader._epoch_plan(0)[0]
    _, y, _ = loader.batch(0)
    assert torch.equal(y, torch.from_numpy(labels)[perm[:500]])


def test_same_seed_same_batches_other_seed_other_batches():
    images, labels = _data()
    a = DeviceLoader(images, labels, 32, "cpu", identity_norm(), augment=True, seed=7)
    b = DeviceLoader(images, labels, 32, "cpu", identity_norm(), augment=True, seed=7)
    c = DeviceLoader(images, labels, 32, "cpu", identity_norm(), augment=True, seed=8)
    for step in (0, 5, 9, 17):  # 17 is in the third epoch
        assert torch.equal(a.batch(step)[0], b.batch(step)[0])
    assert not torch.equal(a.batch(0)[0], c.batch(0)[0])


def test_ranks_split_the_global_batch():
    images, labels = _data()
    whole = DeviceLoader(images, labels, 32, "cpu", identity_norm(), augment=True, seed=2)
    halves = [DeviceLoader(images, labels, 32, "cpu", identity_norm(), augment=True, seed=2, rank=r, world_size=2)
              for r in range(2)]
    x, *_ = whole.batch(3)
    assert torch.equal(halves[0].batch(3)[0], x[0::2]) and torch.equal(halves[1].batch(3)[0], x[1::2])


def test_normalizations():
    images, _ = _data(100)
    pixel = Normalization.fit("pixel-mean", images)
    assert pixel.mean.shape == (3, 32, 32)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert pixel(x).mean(0).abs().max() < 1e-5
    channel = Normalization.fit("channel", images)
    out = channel(x)
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (out.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    loader = DeviceLoader(images, np.zeros(100, dtype=np.int64), 30, "cpu", channel, augment=False)
    assert [len(y) for _, y, _ in loader] == [30, 30, 30, 10]


def test_imagenet_transforms_shapes():
    from resnetlab.data.imagenet import sample_generator

    img = torch.randint(0, 255, (3, 300, 400), dtype=torch.uint8)
    assert train_transform()(img, sample_generator(0, 0, 0)).shape == (3, 224, 224)
    assert eval_transform()(img).shape == (3, 224, 224)
    assert eval_transform(ten_crop=True)(img).shape == (10, 3, 224, 224)


def test_imagenet_augmentation_is_a_function_of_seed_epoch_and_index():
    """Scale, crop, flip and lighting are drawn from (seed, epoch, index) alone: the same key gives the same
    image whatever was drawn before (a resume, another worker), another key another image."""
    from resnetlab.data.imagenet import sample_generator

    img = torch.randint(0, 255, (3, 300, 400), dtype=torch.uint8)
    t = train_transform()
    a = t(img, sample_generator(0, 3, 17))
    torch.rand(1000)  # the global RNG is never used
    assert torch.equal(a, t(img, sample_generator(0, 3, 17)))
    others = [t(img, sample_generator(*key)) for key in ((1, 3, 17), (0, 4, 17), (0, 3, 18))]
    assert all(not torch.equal(a, o) for o in others)
    shorts = {int(torch.randint(256, 481, (1,), generator=sample_generator(0, 0, i))) for i in range(200)}
    assert min(shorts) < 280 and max(shorts) > 455  # the whole [256, 480] range is drawn


def test_the_images_a_run_trained_on_come_back_from_its_split_record():
    images, labels = _data(60)
    ds = Dataset("mem", "cifar", [str(c) for c in range(10)], {"train": ArrayDataset(images, labels)})
    train, validation, info = split_for_training(ds, "holdout", 10)
    again = recorded_training_split(ds, info)
    assert len(again) == 50 and np.array_equal(again.images, train.images)
    assert not set(again.index) & set(validation.index)
    assert len(recorded_training_split(ds, {"val": "none", "train_images": 60})) == 60
    with pytest.raises(UserError, match="trained on 40 images"):
        recorded_training_split(ds, {**info, "train_images": 40})
