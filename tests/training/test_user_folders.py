"""Evaluating, predicting and watching runs on a user's folders (issue 41.4-5): a folder of class folders alone
is evaluated whole and named so, predictions name the files of every folder split, every run folder has a
figure of its curves, a log file gets a line at every --log-every, and a split lacking a class says which."""

import csv
import json
import shutil

import pytest

from resnetlab.cli.main import main

FAST = ["--iters", "6", "--batch-size", "16", "--log-every", "2", "--fast", "off", "--device", "cpu", "--workers", "0"]


@pytest.fixture(scope="module")
def tuned(photos96, tmp_path_factory):
    run = tmp_path_factory.mktemp("tuned") / "run"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(photos96), "--out", str(run), "--eval-every", "3",
                 *FAST]) == 0
    return run


def test_a_folder_of_class_folders_alone_is_evaluated_whole_with_files_named(photos96, tuned, tmp_path, capsys):
    test = tmp_path / "my-test-photos"
    shutil.copytree(photos96 / "val", test)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tuned / "last.pt"), "--data", str(test), "--json",
                 "--save-predictions", str(tmp_path / "p.csv")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "all" and result["count"] == 16 and "note" not in result
    rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert sorted(r["item"] for r in rows) == sorted(str(p) for p in test.rglob("*.jpg"))
    from resnetlab.inference.evaluation import measured_on
    assert measured_on("all", 16, str(test)) == f"all 16 images of {test}"
    assert main(["evaluate", "--checkpoint", str(tuned / "last.pt"), "--data", str(photos96), "--split", "all"]) == 2
    assert "--split all is a folder of class folders alone" in capsys.readouterr().err


def test_predictions_of_an_in_memory_folder_split_name_its_files(photos96, tuned, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tuned / "last.pt"), "--data", str(photos96),
                 "--save-predictions", str(tmp_path / "p.csv")]) == 0
    items = [r["item"] for r in csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8"))]
    assert sorted(items) == sorted(str(p) for p in (photos96 / "val").rglob("*.jpg"))


def test_the_folder_a_run_trained_from_keeps_its_hold_out(photos96, tmp_path, capsys):
    flat = tmp_path / "flat"
    shutil.copytree(photos96 / "train", flat)
    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(flat), "--out", str(run), "--eval-every", "3",
                 "--holdout", "8", *FAST]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(flat), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "holdout" and result["count"] == 8


def test_every_run_folder_has_its_curves_and_a_log_gets_every_log_point(photos96, tuned, tmp_path, capsys):
    assert (tuned / "curves.png").stat().st_size > 10_000
    run = tmp_path / "noval"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(photos96), "--out", str(run), "--val", "none",
                 "--eval-every", "6", *FAST]) == 0
    out = capsys.readouterr().out  # captured: not a terminal, as a log file
    assert (run / "curves.png").is_file()
    assert [line.split("/")[0].split()[-1] for line in out.splitlines() if line.startswith("iter ")] == ["2", "4", "6"]


def test_a_split_lacking_a_class_names_the_missing_folder(photos96, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(photos96, data)
    shutil.rmtree(data / "val" / "class2")
    assert main(["train", "--model", "cifar_resnet8", "--data", str(data), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "lacks the class folder 'class2'" in err and "does not exist" in err and "has no images" not in err
