"""Weights of the bottleneck nets load into the style they were trained as, never a guess (issue 19)."""

import dataclasses

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from resnetlab.data.download import file_digest
from resnetlab.errors import UserError
from resnetlab.inference.load import load_model
from resnetlab.models import create_model, pretrained
from tests.clitools import refused


@pytest.fixture(scope="module")
def tv50(tmp_path_factory):
    """A torchvision ResNet-50 state dict (random weights: what matters is the network it came from)."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(num_classes=1000).eval()
    path = tmp_path_factory.mktemp("tv") / "resnet50-mine.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_an_unknown_bottleneck_state_dict_needs_its_style(tv50, tmp_path, capsys):
    _, path = tv50
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((240, 240, 3), dtype=np.uint8)).save(image)
    err = refused(["predict", "--model", "resnet50", "--weights", str(path), str(image)], "give --style", capsys)
    assert "cannot say which" in err
    with pytest.raises(UserError, match="give --style"):
        load_model(model="resnet50", weights=str(path))


def test_with_its_style_it_computes_what_torchvision_does(tv50):
    net, path = tv50
    loaded = load_model(model="resnet50", weights=str(path), style="torchvision")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net(x), atol=1e-4)
        wrong = load_model(model="resnet50", weights=str(path), style="paper").model(x)
    assert (wrong - net(x)).abs().max() > 0.1  # why a guess is not good enough


def test_a_known_torchvision_file_takes_its_style_and_refuses_another(tv50, monkeypatch):
    net, path = tv50
    entry = pretrained.REGISTRY[("resnet50", "torchvision")]
    known = dataclasses.replace(entry, sha256=file_digest(path, "sha256"))
    monkeypatch.setitem(pretrained.REGISTRY, ("resnet50", "torchvision"), known)
    loaded = load_model(model="resnet50", weights=str(path))  # no --style: the hash says torchvision
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net(x), atol=1e-4)
    assert loaded.classes == list(entry.classes)
    with pytest.raises(UserError, match="trained as style 'torchvision'"):
        load_model(model="resnet50", weights=str(path), style="paper")


def test_options_that_contradict_named_weights_are_refused():
    with pytest.raises(UserError, match="style='torchvision'"):
        create_model("resnet50", weights="torchvision", style="paper")


def test_default_and_torchvision_enum_names_are_aliases():
    from tests.conftest import AKAMASTER

    assert pretrained.lookup("resnet50", "DEFAULT").name == "torchvision-v2"  # torchvision's DEFAULT
    assert pretrained.lookup("resnet18", "DEFAULT").name == "torchvision"
    assert pretrained.lookup("resnet50", "IMAGENET1K_V1").name == "torchvision"
    assert pretrained.lookup("resnet50", "IMAGENET1K_V2").name == "torchvision-v2"
    assert pretrained.lookup("cifar_resnet20", "DEFAULT").name == "akamaster"
    with pytest.raises(UserError, match="no weights named"):
        pretrained.lookup("cifar_plain20", "DEFAULT")
    if (AKAMASTER / "resnet20-12fca82f.th").is_file():
        net = create_model("cifar_resnet20", weights="DEFAULT", weights_dir=str(AKAMASTER))
        assert net.fc.out_features == 10
        # timm's spelling: pretrained=True is DEFAULT; num_classes=K keeps the backbone, a new classifier
        timm_like = create_model("cifar_resnet20", pretrained=True, num_classes=5, weights_dir=str(AKAMASTER))
        assert timm_like.fc.out_features == 5
        assert torch.equal(timm_like.conv1.weight, net.conv1.weight)


def test_named_weights_carry_the_preprocessing_their_error_was_measured_with(tv50, monkeypatch):
    """torchvision's V2 entries were measured resizing to 232, not 256; evaluate and predict use it."""
    _, path = tv50
    entry = pretrained.REGISTRY[("resnet50", "torchvision-v2")]
    assert entry.input == {"size": 224, "resize": 232}
    assert pretrained.REGISTRY[("resnet50", "torchvision")].input == {"size": 224, "resize": 256}
    monkeypatch.setitem(pretrained.REGISTRY, ("resnet50", "torchvision-v2"),
                        dataclasses.replace(entry, sha256=file_digest(path, "sha256")))
    assert load_model(model="resnet50", weights=str(path)).input == {"size": 224, "resize": 232}


def test_list_models_takes_a_pattern_and_a_weights_filter():
    from resnetlab import list_models

    assert list_models("cifar_resnet*", weights=True) == [f"cifar_resnet{d}" for d in (20, 32, 44, 56, 110, 1202)]
    assert list_models("resnet*") == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert list_models("*plain*", weights=True) == []
    assert "cifar_plain56" in list_models()


def test_weights_already_in_torchs_hub_cache_are_used(tmp_path, monkeypatch):
    import shutil

    from tests.conftest import AKAMASTER

    if not (AKAMASTER / "resnet20-12fca82f.th").is_file():
        pytest.skip("the shared akamaster weights are not here")
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    shutil.copy(AKAMASTER / "resnet20-12fca82f.th", hub / "checkpoints")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    empty = tmp_path / "weights"
    net = create_model("cifar_resnet20", weights="akamaster", weights_dir=str(empty))  # offline: no download
    assert net.fc.out_features == 10 and not empty.exists()
