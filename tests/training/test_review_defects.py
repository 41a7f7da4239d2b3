"""Defects a review found (issue 18, part 1), and the durability of what a run writes."""

import json
import os
from pathlib import Path

import torch

from resnetlab.cli.main import main
from resnetlab.runtime.checkpoint import atomic_write, load_checkpoint, write_json
from resnetlab.training import run as run_module
from tests.clitools import TINY, refused


def test_plateau_without_a_validation_split_is_refused(tiny_cifar, tmp_path, capsys):
    """It would never lower the lr, while the start-up line promised it."""
    err = refused(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "4",
                   "--schedule", "plateau", "--val", "none"], "--schedule plateau", capsys)
    assert "no validation split" in err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_seeds_trained_alone_resume_together(tiny_cifar, tmp_path):
    """Their momentum buffers are channels_last (not contiguous): packing them once crashed with 'view size'."""
    for seed in (0, 1):
        assert main(["train", *TINY, "--data", str(tiny_cifar), "--iters", "6", "--seed", str(seed),
                     "--stop-after", "2", "--out", str(tmp_path / "runs" / f"seed{seed}")]) == 0
    assert main(["train", "--resume", str(tmp_path / "runs")]) == 0
    for seed in (0, 1):
        ckpt = load_checkpoint(tmp_path / "runs" / f"seed{seed}" / "last.pt", training=True)
        assert ckpt["state"]["step"] == 6 and ckpt["config"]["seed"] == seed


def test_a_checkpoint_from_a_machine_with_more_gpus_restores_the_generators_that_exist(monkeypatch):
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.append(index))
    run_module.restore_cuda_rng([torch.zeros(8, dtype=torch.uint8)] * 4)  # saved on a 4-GPU machine
    assert restored == [0]


def test_atomic_writes_never_follow_a_planted_link(tmp_path):
    victim = tmp_path / "victim.pt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".summary.json.tmp").symlink_to(victim)  # the temporary name of earlier versions
    (out / "config.json").symlink_to(victim)  # a link at the target itself
    write_json(out / "summary.json", {"a": 1})
    write_json(out / "config.json", {"b": 2})
    assert victim.read_text() == "precious"
    assert json.loads((out / "summary.json").read_text()) == {"a": 1}
    assert not (out / "config.json").is_symlink() and json.loads((out / "config.json").read_text()) == {"b": 2}
    assert sorted(p.name for p in out.iterdir()) == [".summary.json.tmp", "config.json", "summary.json"]


def test_atomic_write_syncs_the_file_and_its_folder_and_names_the_temporary_with_the_real_suffix(tmp_path, monkeypatch):
    synced, names = [], []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.path.isdir(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    atomic_write(tmp_path / "model.onnx", lambda tmp: (names.append(tmp.name), tmp.write_text("x")))
    assert synced == [False, True]  # the file, then the folder holding the rename
    assert names[0].startswith(".model.onnx.") and names[0].endswith(".onnx")


def test_metrics_are_on_disk_before_the_checkpoint_that_covers_them(tiny_cifar, tmp_path, monkeypatch):
    order = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "4"]) == 0
    first_checkpoint = next(i for i, name in enumerate(order) if ".last.pt." in name)
    assert any(name.endswith("metrics.jsonl") for name in order[:first_checkpoint])


def test_one_iteration_trains(tiny_cifar, tmp_path):
    """--iters 1 once derived the milestones [0, 1] and was refused with a message about --milestones."""
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "1"]) == 0


def test_a_warm_up_that_never_reaches_its_bar_ends_at_the_first_milestone_and_says_so(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "8", "--warmup", "on",
                 "--warmup-until-error", "0.001"]) == 0
    assert "warm-up at lr 0.01 ended at the first lr milestone (iteration 4)" in capsys.readouterr().out
    lrs = {r["iteration"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert lrs[2] == 0.01 and lrs[8] == 0.001  # the schedule's 0.001 after the second milestone, not 0.01


def test_runs_trained_together_checkpoint_the_lr_they_train_at(tiny_cifar, tmp_path):
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "8",
                 "--seeds", "2"]) == 0
    for seed in (0, 1):
        ckpt = load_checkpoint(tmp_path / "r" / f"seed{seed}" / "last.pt", training=True)
        assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [0.001]


def test_a_cifar_net_is_evaluated_on_a_folder_of_larger_images_at_its_own_input(tiny_cifar, tmp_path):
    """Once the folder path applied ImageNet's 256 -> 224 crop and mean/std to a CIFAR net (91% error where
    predict was right): evaluate must see each image as predict does."""
    import csv

    import numpy as np
    from PIL import Image

    from resnetlab.data import open_dataset
    from resnetlab.inference import load_model, predict

    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(run), "--iters", "30"]) == 0
    ds = open_dataset(str(tiny_cifar))
    test = ds.splits["test"]
    folder = tmp_path / "big"
    for split, count in (("train", 60), ("test", 60)):
        for i in range(count):
            path = folder / split / ds.classes[int(test.labels[i])] / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.kron(test.images[i], np.ones((3, 3, 1), dtype=np.uint8))).save(path)  # 96x96
    csv_path = tmp_path / "preds.csv"
    assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(folder), "--split", "test",
                 "--workers", "0", "--save-predictions", str(csv_path), "--topk", "1"]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    expected = predict(load_model(str(run / "last.pt")), [Path(r["item"]) for r in rows], topk=1)
    agree = sum(r["class_1"] == e["top"][0]["class"] for r, e in zip(rows, expected))
    assert len(rows) == 60 and agree >= 59, agree  # the same preprocessing (batched floats may flip a near tie)


def test_export_never_replaces_the_named_weights_it_reads(tmp_path, capsys):
    import shutil

    import pytest

    from tests.conftest import AKAMASTER

    if not (AKAMASTER / "resnet20-12fca82f.th").is_file():
        pytest.skip("the shared akamaster weights are not here")
    cache = tmp_path / "w"
    cache.mkdir()
    shutil.copy(AKAMASTER / "resnet20-12fca82f.th", cache)
    before = (cache / "resnet20-12fca82f.th").read_bytes()
    refused(["export", "--model", "cifar_resnet20", "--weights", "akamaster", "--weights-dir", str(cache),
             "--out", str(cache / "resnet20-12fca82f.th"), "--format", "pt2", "--force"], "a file this command reads", capsys)
    assert (cache / "resnet20-12fca82f.th").read_bytes() == before


def test_evaluate_outputs_never_replace_inputs_and_replace_other_files_only_with_force(tiny_cifar, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(run), "--iters", "2"]) == 0
    ckpt = run / "last.pt"
    before = ckpt.read_bytes()
    base = ["evaluate", "--checkpoint", str(ckpt), "--data", str(tiny_cifar)]
    refused([*base, "--save-predictions", str(ckpt), "--force"], "a file this command reads", capsys)
    refused([*base, "--plot", str(ckpt), "--force"], "a file this command reads", capsys)
    refused([*base, "--save-predictions", str(tiny_cifar / "preds.csv")], "inside the dataset folder", capsys)
    refused([*base, "--plot", str(tmp_path / "x.png"), "--save-predictions", str(tmp_path / "x.png")], "give two files", capsys)
    refused([*base, "--plot", str(tmp_path / "confusion.txt")], "name it .png", capsys)
    refused([*base, "--plot", str(tmp_path)], "is a folder", capsys)
    existing = tmp_path / "old.csv"
    existing.write_text("keep me")
    refused([*base, "--save-predictions", str(existing)], "exists; add --force", capsys)
    assert existing.read_text() == "keep me" and ckpt.read_bytes() == before
    assert main([*base, "--save-predictions", str(existing), "--force"]) == 0
    assert existing.read_text().startswith("item,true_class")


def test_reproduce_never_writes_into_a_folder_it_did_not_make(tiny_cifar, tmp_path, capsys):
    foreign = tmp_path / "paper"
    foreign.mkdir()
    (foreign / "report.md").write_text("my own report")
    from tests.training.test_imagenet_folders import imagenet_folders

    folders = imagenet_folders(tmp_path / "ds", train=1, val=1)
    for experiment, data in ((["cifar", "--depths", "8"], tiny_cifar), (["imagenet", "--workers", "0"], folders)):
        refused(["reproduce", *experiment, "--data", str(data), "--out", str(foreign), "--iters", "2"],
                "was not made by resnetlab reproduce", capsys)
    assert (foreign / "report.md").read_text() == "my own report" and sorted(os.listdir(foreign)) == ["report.md"]
    (tmp_path / "file").write_text("x")
    refused(["reproduce", "cifar", "--depths", "8", "--data", str(tiny_cifar), "--out", str(tmp_path / "file")],
            "a file is there", capsys)


def test_json_output_of_a_nan_model_is_json_and_csv_cells_are_inert(tiny_cifar, tmp_path, capsys):

    from resnetlab.runtime.outputs import inert_cell

    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(run), "--iters", "2"]) == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    # Finite weights (NaN ones are refused at load, issue 40.17) whose outputs overflow to inf and NaN
    ckpt["model"] = {k: torch.full_like(v, 1e30) if k.endswith("conv1.weight") or k == "fc.weight" else v
                     for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "nan.pt")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nan.pt"), "--data", str(tiny_cifar), "--json"]) == 0
    result = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest_fail(f"bare {c} in --json output"))
    assert result["loss"] is None and result["count"] > 0
    assert inert_cell("=cmd") == "'=cmd" and inert_cell("@x") == "'@x" and inert_cell("cat") == "cat"


def pytest_fail(message):
    raise AssertionError(message)


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
