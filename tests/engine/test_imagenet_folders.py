import json

import numpy as np
from PIL import Image

from resnetlab.cli.main import main


def imagenet_folders(root, train=4, val=2, classes=("cat", "dog"), seed=0):
    """train/ and val/ folders of JPEGs of varied sizes, each class its own mean colour."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                size = (int(rng.integers(260, 320)), int(rng.integers(260, 320)), 3)
                base = np.full(size, 40 + 150 * k // max(1, len(classes) - 1), dtype=np.int64)
                img = np.clip(base + rng.integers(-40, 40, size), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.jpg")
    return root


def test_train_and_ten_crop_evaluate_on_imagenet_style_folders(tmp_path, capsys):
    """The streaming path: train/ and val/ folders of large JPEGs through the DataLoader pipeline."""
    imagenet_folders(tmp_path / "ds")
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet18", "--recipe", "imagenet-paper", "--data", str(tmp_path / "ds"),
                 "--out", str(out), "--iters", "2", "--batch-size", "4", "--eval-every", "2", "--log-every", "1",
                 "--workers", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["val_split"] == "val" and summary["final_val_error"] is not None
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--data", str(tmp_path / "ds"), "--ten-crop",
                 "--workers", "0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["split"] == "val" and r["count"] == 4
    assert main(["predict", "--checkpoint", str(out / "last.pt"), str(tmp_path / "ds" / "val" / "cat" / "0.jpg"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] in ("cat", "dog")


IMAGENET_TINY = ["--model", "resnet18", "--recipe", "imagenet-paper", "--batch-size", "4", "--lr", "0.01", "--log-every", "1",
                 "--eval-every", "3", "--workers", "0"]


def test_folder_runs_resume_bit_exact_and_report_data_wait(tmp_path):
    from tests.clitools import metrics, same_weights, without_speed

    data = imagenet_folders(tmp_path / "ds", train=6)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *IMAGENET_TINY, "--data", str(data), "--out", str(straight), "--iters", "6"]) == 0
    assert main(["train", *IMAGENET_TINY, "--data", str(data), "--out", str(split), "--iters", "6",
                 "--stop-after", "2", "--workers", "2"]) == 0  # other workers: the same draws
    assert main(["train", "--resume", str(split)]) == 0
    assert same_weights(straight / "last.pt", split / "last.pt")
    assert without_speed(metrics(straight)) == without_speed(metrics(split))
    assert all(0 <= r["data_wait"] <= 1 for r in metrics(straight))


def test_pixel_mean_is_refused_for_image_folders_rather_than_ignored(tmp_path, capsys):
    from tests.clitools import refused

    data = imagenet_folders(tmp_path / "ds")
    refused(["train", *IMAGENET_TINY, "--data", str(data), "--out", str(tmp_path / "r"), "--normalization",
             "pixel-mean"], "--normalization pixel-mean is supported for in-memory", capsys)
