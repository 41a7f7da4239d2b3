"""`reproduce transfer` (issue 31): pretrain on the vehicles, then three ways on the animals, reported."""

import json

import numpy as np
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.experiments import transfer


def _cifar_like(root, per_class):
    rng = np.random.default_rng(0)
    for k, c in enumerate((*transfer.VEHICLES, *transfer.ANIMALS)):
        (root / "train" / c).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 80, (8, 8, 3), dtype=np.uint8) + np.uint8(17 * k)
            Image.fromarray(img).save(root / "train" / c / f"{i:04d}.png")


def test_transfer_trains_three_ways_and_reports_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(transfer, "HOLDOUT_PER_CLASS", 10)
    data = tmp_path / "cifar"
    _cifar_like(data, 40)
    out = tmp_path / "transfer"
    args = ["reproduce", "transfer", "--data", str(data), "--out", str(out), "--per-class", "22", "--seeds", "1",
            "--pretrain-iters", "2", "--iters", "2", "--device", "cpu"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for way in transfer.WAYS:
        assert f"| 22 | {way} |" in report
    probe = json.loads((out / "runs" / "linear-probing-22-seed0" / "config.json").read_text())
    assert probe["freeze"] == "backbone" and probe["weights"].endswith("pretrain/last.pt")
    # no animal image in the vehicle set, the hold-out disjoint from training
    train = {p.resolve() for p in (out / "data" / "animals-22" / "train").rglob("*.png")}
    test = {p.resolve() for p in (out / "data" / "animals-22" / "test").rglob("*.png")}
    assert len(train) == 6 * 22 and len(test) == 6 * 10 and not train & test
    assert sorted(p.name for p in (out / "data" / "vehicles").iterdir()) == sorted(transfer.VEHICLES)
    # the same command again: every run finished, nothing trained
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 4


def test_the_trend_sentence_follows_the_numbers_and_the_noise():
    from resnetlab.experiments.transfer import trend

    shrinking = {("fine-tuning", 25): [0.50, 0.51], ("from scratch", 25): [0.70, 0.71],
                 ("fine-tuning", 100): [0.40, 0.41], ("from scratch", 100): [0.50, 0.51],
                 ("fine-tuning", 500): [0.30, 0.31], ("from scratch", 500): [0.33, 0.34]}
    assert "shrinks at every step" in trend(shrinking) and "20.0 points at 25" in trend(shrinking)
    noisy = {**shrinking, ("from scratch", 100): [0.40, 0.60]}
    assert "not every step" in trend(noisy)
    assert trend({("fine-tuning", 25): [0.5], ("from scratch", 25): [0.6]}) == ""
