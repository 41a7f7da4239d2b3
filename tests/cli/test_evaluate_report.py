"""Evaluation people can act on: per-class accuracy, the confusion matrix, a plot and per-image predictions,
checked on a model whose answers are known."""

import csv
import json
import math

import numpy as np
import torch
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.runtime.checkpoint import load_checkpoint, save_checkpoint
from tests.clitools import TINY


def test_per_class_confusion_plot_and_predictions_of_a_model_that_always_says_a(tmp_path, capsys):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", *TINY, "--batch-size", "8", "--data", str(root), "--out", str(run), "--iters", "2"]) == 0
    ckpt = load_checkpoint(run / "last.pt")
    ckpt["model"]["fc.weight"].zero_()
    ckpt["model"]["fc.bias"].copy_(torch.tensor([10.0, 0.0, 0.0]))  # every image is an "a"
    del ckpt["format"]
    save_checkpoint(tmp_path / "always_a.pt", ckpt)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "always_a.pt"), "--data", str(root), "--json",
                 "--plot", str(tmp_path / "confusion.png"), "--save-predictions", str(tmp_path / "p.csv"),
                 "--topk", "2"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["split"] == "holdout" and r["count"] == 6  # the small folder's 10% hold-out: 2 per class
    assert [(c["class"], c["count"], c["accuracy"]) for c in r["per_class"]] == [("a", 2, 1.0), ("b", 2, 0.0), ("c", 2, 0.0)]
    assert r["confusion"] == [[2, 0, 0], [2, 0, 0], [2, 0, 0]]
    assert r["top1_error"] == 4 / 6
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 6 and [row["true_class"] for row in rows] == ["a", "a", "b", "b", "c", "c"]
    assert all(row["class_1"] == "a" for row in rows)
    p_a = math.exp(10) / (math.exp(10) + 2)
    assert all(abs(float(row["probability_1"]) - p_a) < 1e-4 for row in rows)
    assert all(row["class_2"] in ("b", "c") for row in rows)


def test_human_output_names_the_weakest_classes(tiny_cifar, tmp_path, capsys):
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "r" / "last.pt"), "--data", str(tiny_cifar)]) == 0
    assert "weakest classes: " in capsys.readouterr().out
