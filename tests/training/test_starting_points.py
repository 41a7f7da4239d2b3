"""Starting from torchvision's and akamaster's weights as their users expect (issue 40, items 4-6): the classes
named by WordNet id or by torchvision's categories are one list, the weights' own style and normalization are
taken where the user gave none."""

import json

import pytest
import torch
import torchvision

from resnetlab.cli.main import main
from resnetlab.models import pretrained
from resnetlab.training.config import configure
from tests.training.test_finetune import FAST, animals  # noqa: F401 (a fixture)

CATEGORIES = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"]


def test_torchvisions_categories_are_imagenets_sorted_wordnet_ids():
    wnids = ["n01440764", *sorted(f"n{n:08d}" for n in range(1_500_000, 1_500_998)), "n15075141"]
    assert pretrained.same_classes(CATEGORIES, wnids) and pretrained.same_classes(CATEGORIES, list(CATEGORIES))
    assert not pretrained.same_classes(CATEGORIES, wnids[::-1])  # another order: another classifier
    assert not pretrained.same_classes(CATEGORIES, ["n01440764", *wnids[2:], "n15075141"][:999] + ["x"])
    assert not pretrained.same_classes(CATEGORIES[:10], wnids[:10])


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A file in torchvision's own format, recognised as its published ResNet-50 (as its sha256 would be)."""
    path = tmp_path_factory.mktemp("tv") / "resnet50-published.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


def test_a_torchvision_file_trains_without_style(torchvision_file, animals, tmp_path, capsys,  # noqa: F811
                                                 monkeypatch):
    entry = pretrained.lookup("resnet50", "torchvision")
    monkeypatch.setattr(pretrained, "identify", lambda path, digest=None: entry)
    out = tmp_path / "r50"
    assert main(["train", "--model", "resnet50", "--weights", str(torchvision_file), "--data", str(animals),
                 "--out", str(out), "--iters", "1", *FAST]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["style"] == "torchvision" and config["normalization"] == "weights"
    assert "new 3-way classifier" in capsys.readouterr().out
    # --style given: the user's word stands, and the contradiction is refused in one line
    assert main(["train", "--model", "resnet50", "--weights", str(torchvision_file), "--data", str(animals),
                 "--out", str(tmp_path / "paper"), "--iters", "1", "--style", "paper", *FAST]) == 2
    assert "trained as style 'torchvision'" in capsys.readouterr().err


def test_any_recipe_takes_the_weights_normalization_unless_told_otherwise():
    cfg = configure("cifar-paper", model="cifar_resnet20", weights="akamaster", data="d", out="o")
    assert cfg.normalization == "weights"
    assert configure("cifar-paper", model="cifar_resnet20", weights="akamaster", data="d", out="o",
                     normalization="pixel-mean").normalization == "pixel-mean"
    assert configure("cifar-paper", model="cifar_resnet20", data="d", out="o").normalization == "pixel-mean"


def test_a_torchvision_resnet18_file_is_told_by_its_keys(animals, tmp_path, capsys):  # noqa: F811
    """Issue 41.3: the paper's ResNet-18 has option-A shortcuts (no tensors): a file with projection shortcuts is
    torchvision's, and loads without --style."""
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    out = tmp_path / "r18"
    assert main(["train", "--model", "resnet18", "--weights", str(path), "--data", str(animals), "--out", str(out),
                 "--iters", "1", *FAST]) == 0
    assert json.loads((out / "config.json").read_text())["style"] == "torchvision"
