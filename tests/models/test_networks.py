import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.errors import UserError
from resnetlab.models import Bottleneck, ZeroPadShortcut, count_macs, count_parameters, create_model, list_models

TABLE6_PARAMS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}
TABLE1_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}
FAST = [n for n in list_models() if n not in ("cifar_resnet1202", "resnet152", "resnet101")]


@pytest.mark.parametrize("depth,millions", TABLE6_PARAMS.items())
def test_cifar_parameter_counts_match_table6(depth, millions):
    n = count_parameters(create_model(f"cifar_resnet{depth}"))
    digits = 1 if millions >= 1 else 2
    assert round(n / 1e6, digits) == millions
    if depth != 1202:
        assert count_parameters(create_model(f"cifar_plain{depth}")) == n


@pytest.mark.parametrize("name,gmacs", TABLE1_GMACS.items())
def test_imagenet_multiply_adds_match_table1(name, gmacs):
    assert count_macs(create_model(name), 224) / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_torchvision_style_resnet50_is_v15():
    assert count_macs(create_model("resnet50", style="torchvision"), 224) / 1e9 == pytest.approx(4.1, rel=0.01)


@pytest.mark.parametrize("name", FAST)
def test_output_shape_and_finite_gradients(name):
    model = create_model(name, num_classes=7)
    size = 32 if name.startswith("cifar") else 64
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


STAGES = {
    "resnet18": [(64, 56), (64, 56), (128, 28), (256, 14), (512, 7)],
    "resnet50": [(64, 56), (256, 56), (512, 28), (1024, 14), (2048, 7)],
    "resnet152": [(64, 56), (256, 56), (512, 28), (1024, 14), (2048, 7)],
    "plain34": [(64, 56), (64, 56), (128, 28), (256, 14), (512, 7)],
    "cifar_resnet20": [(16, 32), (16, 32), (32, 16), (64, 8)],
    "cifar_plain56": [(16, 32), (16, 32), (32, 16), (64, 8)],
}


# style only changes the bottleneck; cifar_resnet1202 has its own (smaller) test below.
STAGE_CASES = [(n, s) for n in list_models() if n != "cifar_resnet1202"
               for s in (("paper", "torchvision") if not n.startswith("cifar") else ("paper",))]


@pytest.mark.parametrize("name,style", STAGE_CASES)
def test_feature_maps_after_each_stage_match_table1(name, style):
    """Catches a stride applied twice (or not at all) in a downsampling block."""
    model = create_model(name, style=style).eval()
    cifar = name.startswith("cifar")
    size = 32 if cifar else 224
    with torch.no_grad():
        maps = model.features(torch.randn(1, 3, size, size))
    shapes = [(m.shape[1], m.shape[2]) for m in maps]
    expected = STAGES.get(name) or (STAGES["cifar_resnet20"] if cifar else
                                    STAGES["resnet50"] if name in ("resnet101", "resnet152") else STAGES["resnet18"])
    assert shapes == expected


def test_no_conv_has_a_bias_and_bn_follows_every_conv():
    for name in ("resnet50", "cifar_resnet20", "resnet18"):
        model = create_model(name, shortcut="C") if name != "resnet50" else create_model(name)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert convs and all(c.bias is None for c in convs)
        assert len(bns) == len(convs)


def test_bottleneck_stride_sits_on_one_conv_only():
    paper = create_model("resnet50").layer2[0]
    tv = create_model("resnet50", style="torchvision").layer2[0]
    assert (paper.conv1.stride, paper.conv2.stride) == ((2, 2), (1, 1))
    assert (tv.conv1.stride, tv.conv2.stride) == ((1, 1), (2, 2))
    assert isinstance(paper, Bottleneck) and paper.expansion == 4


def test_shortcut_options_parameters():
    plain = count_parameters(create_model("plain34"))
    a = count_parameters(create_model("resnet34", shortcut="A"))
    b = count_parameters(create_model("resnet34", shortcut="B"))
    c = count_parameters(create_model("resnet34", shortcut="C"))
    assert a == plain < b < c


def test_projection_shortcuts_are_built_and_used():
    """Option B puts a 1x1 conv + BN exactly where shapes change; zeroing it changes the output."""
    model = create_model("resnet34", shortcut="B").eval()
    projections = [n for n, m in model.named_modules() if n.endswith("downsample") and m is not None]
    assert projections == ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.layer2[0].downsample[0].weight.zero_()
        assert not torch.allclose(before, model(x))
    c_model = create_model("cifar_resnet20", shortcut="C")
    assert all(isinstance(b.downsample, nn.Sequential) for stage in (c_model.layer1, c_model.layer2) for b in stage)


def test_option_a_pads_channels_evenly_and_subsamples():
    sc = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_plain_nets_have_no_shortcut_and_differ_from_resnets():
    plain, res = create_model("cifar_plain20"), create_model("cifar_resnet20")
    plain.load_state_dict(res.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain.eval()(x), res.eval()(x))
    assert all(not b.residual for b in plain.layer1)


def test_zero_init_residual_makes_blocks_identity_at_start():
    model = create_model("resnet50", zero_init_residual=True)
    assert all(b.bn3.weight.abs().sum() == 0 for b in model.layer1)
    assert all(b.bn3.weight.abs().sum() > 0 for b in create_model("resnet50").layer1)


def test_he_initialization():
    conv = create_model("resnet18").layer3[0].conv2  # 3x3, 256 -> 256, fan_out = 9 * 256
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 256)) ** 0.5, rel=0.05)


def test_cifar_resnet1202_forward_backward_at_batch_2():
    model = create_model("cifar_resnet1202")
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(model.conv1.weight.grad).all()


def test_unknown_model_suggests_close_names():
    with pytest.raises(UserError, match="did you mean.*cifar_resnet20"):
        resnetlab.create_model("cifar_resnet2O")
    with pytest.raises(UserError, match="6n\\+2"):
        create_model("cifar_resnet21")
