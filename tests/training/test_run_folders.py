"""A folder is a run's only when it bears resnetlab's mark (issue 40.12): a user's files under a run's file
names are never overwritten, deleted or written into."""

import pytest

from resnetlab.cli.main import main
from resnetlab.training.rundir import MARKER

ARGS = ["--model", "cifar_resnet8", "--iters", "1", "--device", "cpu", "--fast", "off", "--batch-size", "16"]


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "split.json", "tensorboard"])
def test_a_users_file_named_as_a_runs_is_never_replaced(tiny_cifar, tmp_path, capsys, name):
    out = tmp_path / "mine"
    out.mkdir()
    mine = out / name
    if name == "tensorboard":
        mine.mkdir()
        (mine / "notes.txt").write_text("my notes")
    else:
        mine.write_text("my own file")
    assert main(["train", *ARGS, "--data", str(tiny_cifar), "--out", str(out)]) == 2
    assert "without the mark" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert (mine / "notes.txt" if name == "tensorboard" else mine).read_text().startswith("my")


def test_an_unfinished_start_bearing_the_mark_is_started_again(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).touch()
    (out / "config.json").write_text("{}")  # what a start killed before its first checkpoint leaves
    assert main(["train", *ARGS, "--data", str(tiny_cifar), "--out", str(out)]) == 0
    assert (out / "last.pt").is_file()
