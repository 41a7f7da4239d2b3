"""reproduce cifar --protocol paper: the final models of Sec. 4.2 train on every training image, are never
validated, and are measured once at the end on the test split where there is one."""

import json

import numpy as np
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.experiments import cifar_sentences as sentences
from tests.cifar_files import images_and_labels


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_paper_protocol_trains_on_every_image_and_tests_once_at_the_end(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "final"
    assert main(["reproduce", "cifar", "--out", str(out), "--depths", "8", "--nets", "resnet", "--iters", "4",
                 "--protocol", "paper", "--data", str(tiny_cifar), "--device", "cpu"]) == 0
    run = out / "runs" / "cifar_resnet8-seed0"
    split = json.loads((run / "split.json").read_text())
    assert split["train_images"] == 600 and split["val"] == "none" and "val_indices" not in split
    assert not any("val_error" in m for m in _metrics(run))  # never validated: nothing to choose a checkpoint on
    assert not (run / "best.pt").exists()
    measured = json.loads((run / "final_errors.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(tiny_cifar), "--split", "test",
                 "--json"]) == 0
    test_error = json.loads(capsys.readouterr().out)["top1_error"]
    assert abs(measured["test_error"] - test_error) < 1e-9 and measured["train_images"] == 600
    table = (out / "table6.md").read_text()
    assert f"{test_error:.2%}" in table and "| 600 |" in table
    report = (out / "report.md").read_text()
    assert "final protocol" in report and "all 600 training images" in report and "no test split" not in report


def test_without_a_test_split_the_report_says_it_has_no_unseen_images(tmp_path, capsys):
    images, labels = images_and_labels(150, 3, seed=1)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "data" / "train" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image)).save(folder / f"{i}.png")
    out = tmp_path / "final"
    assert main(["reproduce", "cifar", "--out", str(out), "--depths", "8", "--nets", "resnet,plain", "--iters", "2",
                 "--protocol", "paper", "--data", str(tmp_path / "data"), "--device", "cpu"]) == 0
    measured = json.loads((out / "runs" / "cifar_plain8-seed0" / "final_errors.json").read_text())
    assert measured["test_error"] is None and measured["train_images"] == 150
    report = (out / "report.md").read_text()
    assert "has no test split, so these runs have no error on unseen images" in report
    assert "validation error" not in report and "| no test split |" in (out / "table6.md").read_text()
    # Read back, not measured again: the file is keyed by the final weights' sha256
    mtime = (out / "runs" / "cifar_plain8-seed0" / "final_errors.json").stat().st_mtime_ns
    assert main(["reproduce", "cifar", "--out", str(out), "--depths", "8", "--nets", "resnet,plain", "--iters", "2",
                 "--protocol", "paper", "--data", str(tmp_path / "data"), "--device", "cpu", "--report-only"]) == 0
    assert (out / "runs" / "cifar_plain8-seed0" / "final_errors.json").stat().st_mtime_ns == mtime

    # evaluate has nothing unseen to measure such weights on, and says so, instead of measuring seen images
    last = str(out / "runs" / "cifar_plain8-seed0" / "last.pt")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", last, "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "trained on every training image" in err and "nothing unseen" in err and "150" in err
    for split in ("train", "holdout"):  # asked for by name: measured, and the figure called what it is
        assert main(["evaluate", "--checkpoint", last, "--data", str(tmp_path / "data"), "--split", split,
                     "--json"]) == 0
        assert "this error is on seen images" in json.loads(capsys.readouterr().out)["note"]


def test_sentences_judge_training_error_alone_when_there_is_no_test_error():
    rows = [{"net": n, "depth": d, "final_train_error": e, "mean": None, "std": None, "seeds": 1}
            for n, d, e in (("plain", 20, 0.05), ("plain", 56, 0.09), ("resnet", 20, 0.04), ("resnet", 56, 0.02))]
    text = sentences.degradation_sentence(rows)
    assert "The degradation problem shows" in text and "The deeper ResNet trains better" in text
    assert "validation" not in text
    assert sentences.noise_threshold(rows) is None
