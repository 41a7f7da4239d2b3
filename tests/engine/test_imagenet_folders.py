import json

import numpy as np
from PIL import Image

from resnetlab.cli.main import main


def test_train_and_ten_crop_evaluate_on_imagenet_style_folders(tmp_path, capsys):
    """The streaming path: train/ and val/ folders of large JPEGs through the DataLoader pipeline."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in ("cat", "dog"):
            (tmp_path / "ds" / split / c).mkdir(parents=True)
            for i in range(n):
                size = (int(rng.integers(260, 320)), int(rng.integers(260, 320)), 3)
                Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(tmp_path / "ds" / split / c / f"{i}.jpg")
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
