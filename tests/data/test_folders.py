import json

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.data import holdout_split, open_dataset
from resnetlab.errors import UserError


def _folder(root, sizes=None, classes=("a", "b"), n=3, fmt="png"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            size = (sizes or {}).get((c, i), 32)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.{fmt}")
    return root


def test_inspect_shared_cifar_reports_50k_in_cifar_order(shared_cifar, capsys):
    assert main(["data", "inspect", str(shared_cifar), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"train": 50000}
    assert info["classes"] == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert info["image_size"] == [32, 32]
    assert info["mean"] == pytest.approx([0.489, 0.481, 0.447], abs=0.01)


def test_second_load_of_shared_folder_is_cached_and_fast(shared_cifar, monkeypatch):
    """The second load reads the decode cache: one image is decoded (to learn the size), not 50,000.
    (It used to assert < 2 s, which a busy machine can miss; the count is what makes it fast.)"""
    from resnetlab.data import folders

    first = open_dataset(shared_cifar)
    real, calls = folders.decode, {"n": 0}

    def counted(path):
        calls["n"] += 1
        return real(path)

    monkeypatch.setattr(folders, "decode", counted)
    second = open_dataset(shared_cifar)
    assert calls["n"] <= 1
    assert np.array_equal(first.splits["train"].labels, second.splits["train"].labels)
    assert np.array_equal(first.splits["train"].images, second.splits["train"].images)


def test_holdout_is_stratified_and_fixed(shared_cifar):
    labels = open_dataset(shared_cifar).splits["train"].labels
    train, val = holdout_split(labels)
    assert len(val) == 5000 and len(train) == 45000 and not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [500] * 10
    # The same on every machine: PCG64's stream is fixed; these are the first indices it picks.
    assert np.array_equal(val, holdout_split(labels)[1])
    assert val[:5].tolist() == [26, 28, 46, 50, 61]


def test_cache_is_invalidated_when_a_file_changes(tmp_path):
    root = _folder(tmp_path / "imgs")
    a = open_dataset(root).splits["train"].images.copy()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "a" / "0.png")
    b = open_dataset(root).splits["train"].images
    assert not np.array_equal(a[0], b[0]) and b[0].sum() == 0


def test_train_val_test_folders_and_non_images_counted(tmp_path):
    for split in ("train", "val"):
        _folder(tmp_path / "ds" / split)
    (tmp_path / "ds" / "train" / "a" / "notes.txt").write_text("hello")
    ds = open_dataset(tmp_path / "ds")
    assert set(ds.splits) == {"train", "val"} and ds.ignored == 1 and ds.classes == ["a", "b"]


def test_corrupt_image_named_then_skipped_on_request(tmp_path):
    root = _folder(tmp_path / "imgs", fmt="jpg")
    data = (root / "b" / "1.jpg").read_bytes()
    (root / "b" / "1.jpg").write_bytes(data[: len(data) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match=r"cannot decode image .*b/1.jpg"):
        open_dataset(root, cache_dir=cache)
    assert not cache.exists() or not list(cache.rglob("*.npz"))  # nothing half-written
    ds = open_dataset(root, skip_corrupt=True, cache_dir=cache)
    assert ds.skipped == 1 and len(ds.splits["train"]) == 5


def test_empty_class_folder_and_mixed_sizes(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "c").mkdir()
    with pytest.raises(UserError, match=r"class folder .*/c has no images"):
        open_dataset(root)
    mixed = _folder(tmp_path / "mixed", sizes={("b", 2): 28})
    with pytest.raises(UserError, match=r"b/2.png is 28x28, but .* is 32x32"):
        open_dataset(mixed, cache_dir=tmp_path / "c2")
    assert not (tmp_path / "c2").exists() or not list((tmp_path / "c2").rglob("*.npz"))


def test_large_images_stay_files_for_the_imagenet_pipeline(tmp_path):
    root = _folder(tmp_path / "big", sizes={(c, i): 300 for c in "ab" for i in range(3)})
    ds = open_dataset(root)
    assert not ds.in_memory and len(ds.splits["train"]) == 6


def test_inspect_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing: no such file or folder" in err and "Traceback" not in err


def test_large_jpegs_are_decoded_no_larger_than_the_transform_needs(tmp_path):
    """Pillow's draft decodes a JPEG at 1/2, 1/4 or 1/8 where the transform's largest use of it is that small,
    never below it, and to nearly the pixels a full decode and resize give; other formats decode whole."""
    import torch
    from torchvision.transforms import v2

    from resnetlab.data.folders import decode
    from resnetlab.data.imagenet import FolderImages, eval_transform, train_transform

    yy, xx = np.mgrid[0:768, 0:1024]
    smooth = np.stack([xx / 4, yy / 3, (xx + yy) / 7], -1).clip(0, 255).astype(np.uint8)  # a photo's gradients
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(smooth).save(tmp_path / "big.png")
    full, drafted = decode(tmp_path / "big.jpg"), decode(tmp_path / "big.jpg", min_side=224)
    assert full.shape == (3, 768, 1024) and drafted.shape == (3, 384, 512)  # 1/4 would be 192 < 224
    assert decode(tmp_path / "big.png", min_side=224).shape == (3, 768, 1024)
    assert decode(tmp_path / "big.jpg", min_side=500).shape == (3, 768, 1024)  # half would be below 500
    same = [v2.functional.resize(x, [224], antialias=True).float() for x in (full, drafted)]
    assert (same[0] - same[1]).abs().mean() < 1.5  # on the 0-255 scale
    assert FolderImages(None, train_transform(224)).min_side == 480  # Sec. 3.4's scale jitter: up to 480
    assert FolderImages(None, train_transform(224, crop_scale=0.08)).min_side == 915  # the smallest box's side
    assert FolderImages(None, eval_transform(224, 256), min_side=256).min_side == 256
    assert torch.equal(decode(tmp_path / "big.jpg", min_side=None), full)
