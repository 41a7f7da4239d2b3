"""Hostile and careless input, round 4 (issue 40): each is refused in one line naming what is wrong, or
handled as a user would expect; nothing the user had is lost."""

import pytest
import torch

import resnetlab
from resnetlab.cli.main import main
from resnetlab.models import create_model
from resnetlab.training import run as run_module

FAST = ["--iters", "1", "--device", "cpu", "--fast", "off", "--batch-size", "16"]


@pytest.mark.parametrize("keyword, value", [("out", None), ("data", None), ("model", 5), ("out", "  ")])
def test_train_refuses_a_missing_path_or_name_by_its_keyword(tmp_path, monkeypatch, keyword, value):
    monkeypatch.chdir(tmp_path)
    kwargs = {"model": "cifar_resnet8", "data": str(tmp_path), "out": str(tmp_path / "r"), keyword: value}
    with pytest.raises(ValueError, match=f"train: {keyword} must be"):
        resnetlab.train(**kwargs)
    assert not (tmp_path / "None").exists()


def test_weights_may_be_a_path_as_data_and_out_are(tiny_cifar, tmp_path):
    first = tmp_path / "first"
    resnetlab.train(model="cifar_resnet8", data=tiny_cifar, out=first, iters=1, device="cpu", fast="off",
                    batch_size=16, quiet=True)
    summary = resnetlab.train(model="cifar_resnet8", data=tiny_cifar, out=tmp_path / "second", weights=first / "last.pt",
                              iters=1, device="cpu", fast="off", batch_size=16, quiet=True)
    assert summary["finished"]


def test_huge_shapes_are_refused_before_they_are_allocated(tiny_cifar, tmp_path, capsys):
    with pytest.raises(ValueError, match="beyond the 100,000 classes"):
        create_model("cifar_resnet20", num_classes=10**9)
    state = create_model("cifar_resnet8").state_dict()
    state["fc.weight"] = torch.zeros(1, 64).expand(10**9, 64)  # a 1 MB file that declares 256 GB
    state["fc.bias"] = torch.zeros(1).expand(10**9)
    path = tmp_path / "huge.pt"
    torch.save(state, path)
    assert path.stat().st_size < 2_000_000
    assert main(["train", "--model", "cifar_resnet8", "--weights", str(path), "--data", str(tiny_cifar), "--out",
                 str(tmp_path / "r"), *FAST]) == 2
    assert "beyond the 100,000 classes" in capsys.readouterr().err
    assert main(["train", "--model", "cifar_resnet600002", "--data", str(tiny_cifar), "--out", str(tmp_path / "d"),
                 *FAST]) == 2
    assert "beyond the 5,000 layers" in capsys.readouterr().err


def test_best_pt_is_written_before_last_pt(tiny_cifar, tmp_path, monkeypatch):
    """Issue 40.10: a kill between the two writes must not leave last.pt's record of the best ahead of best.pt."""
    order = []
    real = run_module.RunDir.save

    def spy(self, name, payload):
        order.append(name)
        return real(self, name, payload)

    monkeypatch.setattr(run_module.RunDir, "save", spy)
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(tmp_path / "r"),
                 "--iters", "2", "--eval-every", "2", "--device", "cpu", "--fast", "off", "--batch-size", "16"]) == 0
    assert order[-2:] == ["best.pt", "last.pt"]
