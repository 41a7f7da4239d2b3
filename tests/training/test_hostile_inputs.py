"""Damaged, hostile or unusable inputs (issue 18, part 1's review): each is one line naming what to mend, never a
traceback, and nothing the user had is lost."""

import json

import torch

from resnetlab.cli.main import main
from resnetlab.runtime.checkpoint import load_checkpoint
from tests.clitools import TINY, refused


def test_damaged_but_readable_checkpoints_are_one_line(tiny_cifar, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(run), "--iters", "2"]) == 0
    good = torch.load(run / "last.pt", weights_only=True)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    model = good["model"]
    variants = {
        "missing key": {"model": {k: v for k, v in model.items() if k != "fc.bias"}},
        "extra key": {"model": {**model, "extra.weight": torch.zeros(1)}},
        "wrong shape": {"model": {**model, "fc.weight": torch.zeros(3, 3)}},
        "model not a dict": {"model": [1, 2]},
        "bad options": {"model_options": {"num_classes": 10, "wings": 2}},
        "negative classes": {"model_options": {"num_classes": -3}},
        "options not a dict": {"model_options": "A"},
        "name not a string": {"model_name": 5},
        "unknown name": {"model_name": "cifar_resnet7"},
        "five class names": {"classes": good["classes"][:5]},
        "classes not strings": {"classes": list(range(10))},
        "bad input": {"input": {"size": -1, "resize": 32}},
        "input a string": {"input": "32"},
        "normalization missing kind": {"normalization": {"mean": good["normalization"]["mean"]}},
        "normalization wrong shape": {"normalization": {**good["normalization"], "mean": torch.zeros(2)}},
        "normalization zero std": {"normalization": {**good["normalization"], "std": torch.zeros(3, 1, 1)}},
        "normalization not a dict": {"normalization": 3},
    }
    for what, change in variants.items():
        path = tmp_path / f"{what.replace(' ', '_')}.pt"
        torch.save({**good, **change}, path)
        err = refused(["predict", "--checkpoint", str(path), str(image)], str(path), capsys)
        assert "damaged" in err or "not a resnetlab" in err, (what, err)


def test_unusable_weight_folders_and_negative_workers_are_one_line(tiny_cifar, tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    base = ["evaluate", "--model", "cifar_resnet20", "--weights", "akamaster", "--data", str(tiny_cifar)]
    refused([*base, "--weights-dir", str(a_file)], "is a file", capsys)
    refused([*base, "--weights-dir", str(a_file / "sub")], "cannot put resnet20-12fca82f.th", capsys)
    refused(["evaluate", "--model", "cifar_resnet20", "--weights", str(a_file), "--data", str(tiny_cifar),
             "--workers", "-1"], "--workers must be 0 or more", capsys)


def test_a_tiny_image_that_would_need_gigabytes_is_refused(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    import resnetlab

    weights = tmp_path / "r20.pth"  # any weights: the image is refused before the net runs
    torch.save(resnetlab.create_model("cifar_resnet20").state_dict(), weights)
    bomb = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((2, 60000, 3), dtype=np.uint8)).save(bomb)
    assert bomb.stat().st_size < 5000
    refused(["predict", "--model", "cifar_resnet20", "--weights", str(weights), str(bomb)], "longer than 20:1", capsys)


def test_a_corrupt_image_read_by_dataloader_workers_is_one_line(tmp_path, capsys):
    from tests.training.test_imagenet_folders import imagenet_folders

    data = imagenet_folders(tmp_path / "ds", train=1, val=2)
    broken = data / "val" / "cat" / "0.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    torch.save(__import__("resnetlab").create_model("resnet18", num_classes=2).state_dict(), tmp_path / "r18.pth")
    err = refused(["evaluate", "--model", "resnet18", "--weights", str(tmp_path / "r18.pth"), "--data", str(data),
                   "--workers", "2", "--split", "val"], "cannot decode image", capsys)
    assert str(broken) in err


def test_a_zip_checkpoint_that_inflates_far_beyond_its_size_is_refused_unread(tmp_path, capsys):
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (64 << 20))
    assert bomb.stat().st_size < (1 << 20)
    refused(["predict", "--checkpoint", str(bomb), str(bomb)], "declares", capsys)


def test_a_folder_named_like_published_weights_does_not_shadow_them(tmp_path, monkeypatch, capsys):
    import shutil

    import numpy as np
    import pytest
    from PIL import Image

    from tests.conftest import AKAMASTER

    if not (AKAMASTER / "resnet20-12fca82f.th").is_file():
        pytest.skip("the shared akamaster weights are not here")
    cache = tmp_path / "w"
    cache.mkdir()
    shutil.copy(AKAMASTER / "resnet20-12fca82f.th", cache)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "akamaster").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", "--model", "cifar_resnet20", "--weights", "akamaster", "--weights-dir", str(cache),
                 "x.png"]) == 0
    assert "x.png:" in capsys.readouterr().out


def test_evaluate_split_holdout_on_a_folder_of_large_images_is_one_line(tmp_path, capsys):
    from tests.training.test_imagenet_folders import imagenet_folders

    data = imagenet_folders(tmp_path / "ds", train=2, val=1)
    torch.save(__import__("resnetlab").create_model("resnet18", num_classes=2).state_dict(), tmp_path / "r18.pth")
    refused(["evaluate", "--model", "resnet18", "--weights", str(tmp_path / "r18.pth"), "--data", str(data),
             "--split", "holdout", "--workers", "0"], "the hold-out split needs in-memory", capsys)


def test_an_unwritable_cache_costs_time_not_the_run(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for k, name in enumerate(("cat", "dog")):
            (tmp_path / "small" / split / name).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((32, 32, 3), 60 * k + i, dtype=np.uint8)).save(tmp_path / "small" / split / name / f"{i}.png")
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "afile"))
    assert main(["data", "inspect", str(tmp_path / "small")]) == 0
    assert "cannot keep the decoded images" in capsys.readouterr().err


def test_an_onnx_export_is_one_self_contained_file(tiny_cifar, tmp_path):
    import shutil

    import numpy as np
    import onnxruntime as ort

    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(run), "--iters", "2"]) == 0
    out = tmp_path / "exported" / "r8.onnx"
    out.parent.mkdir()
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["r8.onnx"]
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(out, alone / "r8.onnx")
    session = ort.InferenceSession(str(alone / "r8.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 10)


def test_a_run_moved_elsewhere_resumes_with_its_data_given_again_and_only_that_data(tiny_cifar, tmp_path, monkeypatch):
    import shutil

    from tests.cifar_files import write_cifar10_python

    workdir = tmp_path / "a"
    workdir.mkdir()
    shutil.copytree(tiny_cifar, workdir / "data")
    monkeypatch.chdir(workdir)
    assert main(["train", *TINY, "--data", "data", "--out", "run", "--iters", "6", "--stop-after", "2"]) == 0
    moved = tmp_path / "b"
    moved.mkdir()
    shutil.move(str(workdir / "run"), moved / "run")
    monkeypatch.chdir(moved)  # "data" no longer resolves from here
    other = tmp_path / "other" / "cifar-10-batches-py"
    write_cifar10_python(other, train_per_batch=100, test=200, seed=5)
    assert main(["train", "--resume", "run", "--data", str(other)]) == 2  # another dataset: refused
    assert main(["train", "--resume", "run", "--data", str(workdir / "data")]) == 0
    assert load_checkpoint(moved / "run" / "last.pt", training=True)["state"]["step"] == 6


def test_time_estimates_read_as_a_person_says_them():
    from resnetlab.training.progress import duration

    assert [duration(s) for s in (0.2, 40, 600, 8200)] == ["1 s", "40 s", "10 min", "2.3 h"]


def test_the_recipe_follows_the_network_and_is_said(tmp_path, capsys):
    """An ImageNet network on an image folder once got CIFAR's recipe and was refused (pixel-mean)."""
    from tests.training.test_imagenet_folders import imagenet_folders

    data = imagenet_folders(tmp_path / "ds", train=2, val=1)
    assert main(["train", "--model", "resnet18", "--data", str(data), "--out", str(tmp_path / "r"), "--iters", "1",
                 "--batch-size", "2", "--workers", "0", "--lr", "0.01"]) == 0
    assert "recipe imagenet-paper; schedule" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "config.json").read_text())["recipe"] == "imagenet-paper"
