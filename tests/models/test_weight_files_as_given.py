"""Weight files as a user has them (issue 41.2): a torchvision ResNet-18 file loads without --style (its keys
tell), a wrong style names the flag, and create_model / load / torch.hub take a file (str or Path) with
num_classes, the hint for a file given where a name is expected no longer loops."""

import logging
from pathlib import Path

import pytest
import torch
import torchvision

import resnetlab
from resnetlab.errors import UserError
from resnetlab.models import create_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def torchvision18(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "resnet18-pets.pth"
    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), path)
    return path


def _same_outputs(ours: torch.nn.Module, path: Path) -> bool:
    theirs = torchvision.models.resnet18(num_classes=4)
    theirs.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 3, 64, 64)
    return torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)


def test_create_model_takes_a_file_its_style_from_the_keys_and_classes_from_the_classifier(torchvision18):
    for given in (str(torchvision18), torchvision18):
        model = create_model("resnet18", weights=given)
        assert model.style == "torchvision" and model.fc.out_features == 4 and _same_outputs(model, torchvision18)
    assert _same_outputs(create_model("resnet18", weights=torchvision18, num_classes=4), torchvision18)


def test_a_new_num_classes_gives_a_new_classifier_on_the_files_backbone(torchvision18, caplog):
    with caplog.at_level(logging.WARNING, logger="resnetlab"):
        model = create_model("resnet18", weights=torchvision18, num_classes=7)
    assert model.fc.out_features == 7 and "new 7-way classifier" in caplog.text
    assert torch.equal(model.conv1.weight, torch.load(torchvision18, weights_only=True)["conv1.weight"])


def test_load_and_torch_hub_take_the_file_too(torchvision18):
    loaded = resnetlab.load(model="resnet18", weights=torchvision18)
    assert loaded.model.style == "torchvision" and _same_outputs(loaded.model, torchvision18)
    hub = torch.hub.load(str(REPO), "resnet18", source="local", weights=str(torchvision18))
    assert _same_outputs(hub, torchvision18)


def test_a_wrong_style_names_the_flag(torchvision18):
    with pytest.raises(UserError, match="unexpected key 'layer2.0.downsample.0.weight'.*give --style torchvision"):
        create_model("resnet18", weights=torchvision18, style="paper")


def test_a_missing_file_and_a_file_given_as_a_name_get_hints_that_do_not_loop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"weights nothere.pth: no such file"):
        create_model("resnet18", weights="./nothere.pth")
    (tmp_path / "weights").mkdir()
    torch.save({}, tmp_path / "weights" / "x.pth")
    with pytest.raises(UserError) as refused:
        resnetlab.get_weights("resnet18", "./weights/x.pth")
    assert "././" not in str(refused.value) and "weights='./weights/x.pth'" in str(refused.value)


def test_train_and_evaluate_take_the_torchvision_file_without_style(torchvision18, photos96, tmp_path, capsys):
    from resnetlab.cli.main import main

    assert main(["evaluate", "--model", "resnet18", "--weights", str(torchvision18), "--data", str(photos96),
                 "--workers", "0"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--model", "resnet18", "--weights", str(torchvision18), "--data", str(photos96), "--out",
                 str(run), "--img-size", "64", "--iters", "2", "--batch-size", "16", "--fast", "off", "--device", "cpu",
                 "--workers", "0"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["model_options"]["style"] == "torchvision"
