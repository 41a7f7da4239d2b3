"""Weights that cannot be misused (issue 28): a file loads only into the network it was trained as, resnetlab's
own weights say how their input is normalized, and weights objects round-trip as torchvision's do."""

import json
import warnings

import pytest
import torch
import torchvision

import resnetlab
from resnetlab.data.download import file_digest
from resnetlab.errors import UserError
from resnetlab.models import create_model, load_weights
from resnetlab.models.pretrained import get_weights
from resnetlab.models.safetensors_files import read_safetensors
from tests.conftest import AKAMASTER, REPO

AKAMASTER_R20 = AKAMASTER / "resnet20-12fca82f.th"


def test_load_weights_refuses_a_torchvision_state_dict_in_the_paper_style_net(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    path = tmp_path / "tv_r50.pth"
    torch.save(tv.state_dict(), path)
    with pytest.raises(UserError, match="cannot say which"):
        load_weights(create_model("resnet50"), path)
    with pytest.raises(UserError, match="this network is style 'paper'"):
        load_weights(create_model("resnet50"), path, style="torchvision")
    ours = load_weights(create_model("resnet50", style="torchvision"), path, style="torchvision").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), atol=1e-4)


def test_load_weights_warns_when_a_resnet_file_meets_a_plain_net():
    if not AKAMASTER_R20.is_file():
        pytest.skip("the shared akamaster weights are not here")
    with pytest.warns(UserWarning, match="trained as cifar_resnet20 but are loaded into cifar_plain20"):
        load_weights(create_model("cifar_plain20"), AKAMASTER_R20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(create_model("cifar_resnet20"), AKAMASTER_R20)


def test_shipped_weights_give_their_normalization_in_numbers_and_a_hub_transform():
    w = get_weights("cifar_resnet20", "resnetlab")
    norm = w.meta["normalization"]
    assert norm["kind"] == "pixel-mean" and torch.tensor(norm["mean"]).shape == (3, 32, 32)
    assert torch.tensor(norm["std"]).flatten().tolist() == [1.0, 1.0, 1.0]
    hub = torch.hub.load(str(REPO), "transforms", "cifar_resnet20", weights="resnetlab", source="local")
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    expected = image.float() / 255 - torch.tensor(norm["mean"])
    assert torch.allclose(hub(image), expected, atol=1e-6)


def test_a_wrongly_normalized_input_meets_a_warning_once():
    net = create_model("cifar_resnet20", weights="resnetlab").eval()
    imagenet_normalized = (torch.rand(4, 3, 32, 32) - 0.45) / 0.25
    with pytest.warns(UserWarning, match="per-pixel mean"):
        net(imagenet_normalized)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net(imagenet_normalized)  # said once
        good = create_model("cifar_resnet20", weights="resnetlab").eval()
        good(get_weights("cifar_resnet20", "resnetlab").transforms()(torch.randint(0, 256, (3, 32, 32),
                                                                                  dtype=torch.uint8))[None])


def test_weights_objects_round_trip_as_torchvisions_do():
    w = get_weights("cifar_resnet20", "resnetlab")
    assert len(repr(w)) < 80 and "resnetlab" in repr(w)
    net = create_model("cifar_resnet20", weights=w)
    assert isinstance(net, torch.nn.Module)
    loaded = resnetlab.load(weights=w)
    assert loaded.classes == w.meta["categories"]
    assert get_weights("ResNet50_Weights.IMAGENET1K_V2") is get_weights("resnet50", "IMAGENET1K_V2")
    tv_meta = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["_metrics"]
    assert get_weights("resnet50", "IMAGENET1K_V2").meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(
        tv_meta["ImageNet-1K"]["acc@1"], abs=1e-3)
    held_out = get_weights("cifar_resnet20", "resnetlab-45k")
    assert held_out.meta["_metrics"]["CIFAR-10"]["acc@1"] == pytest.approx(100 * (1 - held_out.metrics["top1_error"]))
    assert w.meta["_metrics"]["CIFAR-10"] == {}  # trained on every image: no accuracy on unseen ones to file
    with pytest.raises(UserError, match="cifar_resnet20's, not cifar_resnet56's"):
        create_model("cifar_resnet56", weights=w)


def test_shipped_weights_say_the_rule_they_were_chosen_by():
    for model in ("cifar_resnet20", "cifar_resnet56"):
        rule = get_weights(model, "resnetlab").meta["selection"]
        assert "final-iteration" in rule and "seed" in rule
    assert "selection" not in get_weights("cifar_resnet20", "akamaster").meta


def test_the_selection_rule_quotes_the_seed_noise_that_was_measured():
    """The noise the rule names is the committed 16k runs' std over seeds, not a figure typed once."""
    table6 = json.loads((REPO / "results" / "cifar10-16k" / "results.json").read_text())["table6"]
    rule = get_weights("cifar_resnet20", "resnetlab").meta["selection"]
    seeded = {r["depth"]: r for r in table6 if r["net"] == "resnet" and r["seeds"] >= 3}
    assert set(seeded) >= {20, 56}
    assert f"by {100 * seeded[20]['std']:.2f}% at ResNet-20 and {100 * seeded[56]['std']:.2f}% at ResNet-56" in rule
    assert f"(std over {seeded[20]['seeds']} seeds" in rule and seeded[56]["seeds"] == seeded[20]["seeds"]
    assert f"twice the larger ({200 * max(seeded[20]['std'], seeded[56]['std']):.1f} point)" in rule
    shipped = get_weights("cifar_resnet56", "resnetlab")
    assert f"{100 * seeded[56]['mean']:.2f}% ± {100 * seeded[56]['std']:.2f}%" in shipped.meta["source"]


def test_shipped_weights_carry_the_split_they_were_validated_on():
    for model, name in (("cifar_resnet20", "resnetlab-45k"), ("cifar_resnet56", "resnetlab"),
                        ("cifar_resnet20", "resnetlab")):
        w = get_weights(model, name)
        ckpt = read_safetensors(REPO / "src" / "resnetlab" / "weights" / w.filename)  # no pickle at all
        if "train_error" in w.metrics:  # the paper's final protocol: all 50k images trained it, none validated
            assert ckpt["split"]["val"] == "none" and ckpt["split"]["train_images"] == 50000
        else:
            assert ckpt["split"]["val"] == "holdout" and ckpt["split"]["holdout"] == 5000
        assert file_digest(REPO / "src" / "resnetlab" / "weights" / w.filename, "sha256") == w.sha256
