"""Defects a review found (issue 18, part 1): the durability of what a run writes, and what it refuses or says."""

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
    result = json.loads(capsys.readouterr().out, parse_constant=lambda c: _fail(f"bare {c} in --json output"))
    assert result["loss"] is None and result["count"] > 0
    assert inert_cell("=cmd") == "'=cmd" and inert_cell("@x") == "'@x" and inert_cell("cat") == "cat"


def _fail(message):
    raise AssertionError(message)
