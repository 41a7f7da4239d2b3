"""timm interop (issue 43): resnetlab's torchvision-style ResNets exported as safetensors or a model folder load
into timm with the same logits, and timm's ResNet weights (safetensors, .pth, timm's own Hub folder) load into
resnetlab; the folder's config.json is timm's pretrained_cfg."""

import pytest
import torch
from safetensors.torch import save_file

import resnetlab

timm = pytest.importorskip("timm")


def _same(a, b):
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), float((a - b).abs().max())


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnetlab_weights_go_to_timm_with_the_same_logits(name, tmp_path):
    torch.manual_seed(0)
    ours = resnetlab.create_model(name, style="torchvision").eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so they are tested too
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    plain = tmp_path / "plain.pt"
    torch.save(ours.state_dict(), plain)
    folder = tmp_path / "folder"
    resnetlab.export(folder, model=name, weights=str(plain), style="torchvision", format="folder")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ours(x)
        by_file = timm.create_model(name, pretrained=True,
                                    pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors"))).eval()
        _same(by_file(x), expected)
        by_folder = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        _same(by_folder(x), expected)
    cfg = by_folder.pretrained_cfg
    assert tuple(cfg["mean"]) == pytest.approx((0.485, 0.456, 0.406)) and tuple(cfg["input_size"]) == (3, 224, 224)
    assert cfg["crop_pct"] == pytest.approx(224 / 256) and cfg["num_classes"] == 1000


def test_timm_weights_load_into_resnetlab_from_safetensors_pth_and_timms_own_folder(tmp_path):
    torch.manual_seed(0)
    theirs = timm.create_model("resnet50", num_classes=7).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(x)
    save_file(theirs.state_dict(), str(tmp_path / "timm.safetensors"))
    torch.save(theirs.state_dict(), tmp_path / "timm.pth")
    for path in ("timm.safetensors", "timm.pth"):
        ours = resnetlab.create_model("resnet50", weights=str(tmp_path / path), style="torchvision").eval()
        assert ours.fc.out_features == 7  # the classes from the classifier
        with torch.no_grad():
            _same(ours(x), expected)
    with pytest.raises(resnetlab.UserError, match="style"):  # a bare bottleneck state dict cannot say its style
        resnetlab.create_model("resnet50", weights=str(tmp_path / "timm.safetensors"))
    timm.models.save_for_hf(theirs, str(tmp_path / "hub"), safe_serialization=True)  # timm's Hub folder
    loaded = resnetlab.load(tmp_path / "hub")
    assert loaded.name == "resnet50" and len(loaded.classes) == 7 and loaded.model.style == "torchvision"
    with torch.no_grad():
        _same(loaded.model(x), expected)
