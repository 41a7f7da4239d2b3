"""Damaged and unusual data, as users bring it: read correctly, rebuilt, or refused in one line naming the file."""

import io
import json
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.data import folders, open_dataset
from tests.cifar_files import rows, write_cifar10_python
from tests.clitools import TINY, refused


def _folder(root, classes=("a", "b", "c"), n=20, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = np.full((size, size, 3), 60 * k + 20, dtype=np.int64)
            img = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


def _cifar_tarball(tmp_path, per_batch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar10_python(src, train_per_batch=per_batch, test=2, seed=2)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return archive


def _batch(path, data, labels):
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)


@pytest.mark.parametrize("damage,message", [
    ("labels", "data_batch_2: 7 labels for 6 images"),
    ("float", "data_batch_2: pixel data must be uint8"),
    ("shape", "data_batch_2: expected rows of 3072 bytes"),
    ("range", "labels fall outside the 10 class names"),
])
def test_damaged_cifar_batches_are_refused_naming_the_file(damage, message, tmp_path, capsys):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10_python(root, train_per_batch=6, test=2, seed=1)
    x = rows(np.zeros((6, 32, 32, 3), dtype=np.uint8))
    data, labels = {
        "labels": (x, [0] * 7), "float": (x.astype(np.float64) * 300, [0] * 6),
        "shape": (np.zeros((6, 100), dtype=np.uint8), [0] * 6), "range": (x, [0, 1, 2, 3, 4, 99]),
    }[damage]
    _batch(root / "data_batch_2", data, labels)
    refused(["data", "inspect", str(root)], message, capsys)


def test_an_extraction_killed_half_way_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    archive = _cifar_tarball(tmp_path, per_batch=3)
    real = tarfile.TarFile.extract
    calls = {"n": 0}

    def dying(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit(137)  # killed: no handler of ours runs
        return real(self, *a, **kw)

    cache = tmp_path / "cache"
    monkeypatch.setattr(tarfile.TarFile, "extract", dying)
    with pytest.raises(SystemExit):
        open_dataset(archive, cache_dir=cache)
    monkeypatch.setattr(tarfile.TarFile, "extract", real)
    extracted = cache / "extracted"
    assert not [p for p in extracted.iterdir() if not p.name.startswith(".")]  # no half folder under its real name
    ds = open_dataset(archive, cache_dir=cache)
    assert len(ds.splits["train"]) == 15


def test_a_truncated_tarball_is_refused_in_one_line(tmp_path, capsys):
    archive = _cifar_tarball(tmp_path, per_batch=30)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    refused(["data", "inspect", str(archive)], "is not a readable tarball", capsys)


def test_a_tarball_with_links_or_parent_paths_is_refused_through_the_cli(tmp_path, capsys):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    refused(["data", "inspect", str(archive)], "would be written outside", capsys)
    assert not (tmp_path / "outside.txt").exists()


def test_a_damaged_decode_cache_is_rebuilt(tmp_path):
    root = _folder(tmp_path / "imgs", n=4)
    cache = tmp_path / "cache"
    first = open_dataset(root, cache_dir=cache)
    (cache_file,) = cache.glob("folder-*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    again = open_dataset(root, cache_dir=cache)
    assert np.array_equal(first.splits["train"].images, again.splits["train"].images)
    cache_file.write_bytes(b"garbage" * 10)
    assert np.array_equal(open_dataset(root, cache_dir=cache).splits["train"].images, first.splits["train"].images)


def test_png_modes_are_read_as_their_pixels(tmp_path):
    gray16 = np.full((4, 4), 32768, dtype=np.uint16)
    images = {
        "gray16.png": Image.fromarray(gray16),
        "gray.png": Image.fromarray(np.full((4, 4), 100, dtype=np.uint8)),
        "rgba.png": Image.fromarray(np.full((4, 4, 4), (10, 20, 30, 0), dtype=np.uint8)),
        "palette.png": Image.fromarray(np.full((4, 4, 3), (200, 0, 0), dtype=np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE),
    }
    expected = {"gray16.png": (128, 128, 128), "gray.png": (100, 100, 100), "rgba.png": (10, 20, 30),
                "palette.png": (200, 0, 0)}
    for name, img in images.items():
        img.save(tmp_path / name)
        assert tuple(folders.decode(tmp_path / name)[:, 0, 0].tolist()) == expected[name], name


def test_zero_byte_and_text_files_named_jpg_are_refused_or_skipped(tmp_path, capsys):
    root = _folder(tmp_path / "imgs", n=4)
    (root / "a" / "empty.jpg").write_bytes(b"")
    refused(["data", "inspect", str(root)], "cannot decode image", capsys)
    (root / "a" / "empty.jpg").unlink()
    (root / "b" / "notes.jpg").write_text("not an image")
    refused(["data", "inspect", str(root)], "notes.jpg", capsys)
    assert main(["data", "inspect", str(root), "--skip-corrupt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_corrupt"] == 1


def test_a_symlink_loop_in_a_class_folder_is_passed_over(tmp_path, capsys):
    root = _folder(tmp_path / "imgs", n=4)
    os.symlink(root / "a" / "loop.png", root / "a" / "loop.png")
    os.symlink(root / "b" / "dirloop", root / "b" / "dirloop")
    assert main(["data", "inspect", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"train": 12} and info["ignored_files"] == 2


def test_a_decompression_bomb_is_refused_in_inspect_and_predict(tmp_path, monkeypatch, capsys):
    root = _folder(tmp_path / "imgs", n=10)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--batch-size", "8", "--data", str(root), "--out", str(out), "--iters", "2"]) == 0
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's guard, at a size a test can afford
    refused(["data", "inspect", str(root)], "too large to be safe", capsys)
    refused(["predict", "--checkpoint", str(out / "last.pt"), str(root / "a" / "0.png")], "too large to be safe", capsys)


@pytest.mark.parametrize("setup,message", [
    (lambda root: None, "has no class folders"),
    (lambda root: (root / "a").mkdir(), "has no images"),
])
def test_empty_folders_are_refused(setup, message, tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    setup(root)
    refused(["data", "inspect", str(root)], message, capsys)


def test_a_one_class_dataset_is_refused_before_training(tmp_path, capsys):
    root = _folder(tmp_path / "one", classes=("only",), n=10)
    refused(["train", *TINY, "--data", str(root), "--out", str(tmp_path / "r")], "needs at least 2", capsys)
    assert not (tmp_path / "r").exists()


def test_small_folders_hold_out_ten_percent_by_rule_and_say_so(tmp_path, capsys):
    root = _folder(tmp_path / "small", n=20)  # 3 classes x 20: the paper's 5,000 cannot be held out
    out = tmp_path / "run"
    assert main(["train", *TINY, "--batch-size", "8", "--data", str(root), "--out", str(out), "--iters", "4"]) == 0
    assert "6 held out instead" in capsys.readouterr().out
    split = json.loads((out / "split.json").read_text())
    assert (split["holdout"], split["val_images"], split["train_images"]) == (6, 6, 54)
    assert "10% of the smallest class" in split["holdout_rule"]
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--data", str(root), "--split", "holdout",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 6
    refused(["train", *TINY, "--data", str(root), "--out", str(tmp_path / "r2"), "--holdout", "7"],
            "--holdout 7 does not split evenly over 3 classes", capsys)
    refused(["train", *TINY, "--data", str(root), "--out", str(tmp_path / "r3"), "--batch-size", "100"],
            "--batch-size 100 is larger than the 54 training images", capsys)


def test_a_zero_variance_channel_is_refused_for_channel_normalization(tmp_path, capsys):
    root = tmp_path / "flat"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            img = np.zeros((8, 8, 3), dtype=np.uint8)
            img[..., 0] = 50 + i + (20 if c == "b" else 0)  # red varies; green and blue are always 0
            Image.fromarray(img).save(root / c / f"{i}.png")
    refused(["train", *TINY, "--batch-size", "4", "--data", str(root), "--out", str(tmp_path / "r"),
             "--normalization", "channel"], "channel G of the training images has zero variance", capsys)
