"""Surviving faults (issue 32): a resubmitted or restarted job continues its run; checkpoints by time."""


from resnetlab.cli.main import main
from resnetlab.training.rundir import RunDir
from tests.clitools import TINY, refused, same_weights


def _cmd(tiny_cifar, out, *extra):
    return ["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "8", "--fast", "off", *extra]


def test_the_same_command_again_continues_the_run_exactly(tiny_cifar, tmp_path):
    assert main(_cmd(tiny_cifar, tmp_path / "whole")) == 0
    out = tmp_path / "cut"
    assert main(_cmd(tiny_cifar, out, "--stop-after", "4")) == 0
    assert main(_cmd(tiny_cifar, out, "--resume-if-exists")) == 0
    assert same_weights(tmp_path / "whole" / "last.pt", out / "last.pt")


def test_a_torchelastic_restart_continues_without_the_flag(tiny_cifar, tmp_path, monkeypatch):
    assert main(_cmd(tiny_cifar, tmp_path / "whole")) == 0
    out = tmp_path / "cut"
    assert main(_cmd(tiny_cifar, out, "--stop-after", "4")) == 0
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert main(_cmd(tiny_cifar, out)) == 0
    assert same_weights(tmp_path / "whole" / "last.pt", out / "last.pt")


def test_another_run_in_out_is_refused_not_continued(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "cut"
    assert main(_cmd(tiny_cifar, out, "--stop-after", "4")) == 0
    refused(_cmd(tiny_cifar, out, "--resume-if-exists", "--lr", "0.05"), "holds a run with lr = 0.1", capsys)
    refused(_cmd(tiny_cifar, out, "--resume-if-exists", "--iters", "16"), "iters", capsys)


def test_checkpoints_by_time_at_log_points(tiny_cifar, tmp_path, monkeypatch):
    saves = []
    real = RunDir.save

    def counting(self, name, payload):
        saves.append((name, payload["state"]["step"]))
        return real(self, name, payload)

    monkeypatch.setattr(RunDir, "save", counting)
    assert main(_cmd(tiny_cifar, tmp_path / "timed", "--eval-every", "8", "--save-minutes", "1e-9")) == 0
    assert [step for name, step in saves if name == "last.pt"] == [2, 4, 6, 8]
    saves.clear()
    assert main(_cmd(tiny_cifar, tmp_path / "untimed", "--eval-every", "8")) == 0
    assert [step for name, step in saves if name == "last.pt"] == [8]


def test_negative_minutes_are_refused(tiny_cifar, tmp_path, capsys):
    refused(_cmd(tiny_cifar, tmp_path / "r", "--save-minutes", "-1"), "--save-minutes", capsys)
