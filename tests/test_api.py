"""The Python API and the torch.hub entry points, end to end on tiny data."""

import shutil

import pytest
import torch

import resnetlab
from resnetlab.errors import UserError
from tests.conftest import AKAMASTER, REPO


def test_train_resume_evaluate_predict_from_python(tiny_cifar, tmp_path):
    out = tmp_path / "r"
    summary = resnetlab.train(model="cifar_resnet8", data=tiny_cifar, out=out, iters=4, batch_size=32,
                              eval_every=4, log_every=2, amp="off", stop_after=2)  # fp32, as evaluate
    assert summary["iterations"] == 2 and not summary["finished"]
    summary = resnetlab.resume(out)
    assert summary["finished"] and summary["iterations"] == 4
    result = resnetlab.evaluate(checkpoint=out / "last.pt", data=tiny_cifar, split="test")
    assert result["count"] == 200 and result["top1_error"] == summary["final_val_error"]  # the same model, the same split
    assert len(result["per_class"]) == 10 and sum(map(sum, result["confusion"])) == 200
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "red.png")
    (top,) = resnetlab.predict([tmp_path / "red.png"], checkpoint=out / "last.pt", topk=3)
    classes = [c["class"] for c in result["per_class"]]
    assert len(top["top"]) == 3 and all(t["class"] in classes for t in top["top"])  # names, not indices


def test_every_network_is_a_torch_hub_entry_point_with_named_weights(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    names = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")]  # as torch.hub.list
    # every network, and `transforms` (the preprocessing of named weights, issue 28)
    assert sorted(names) == sorted([*resnetlab.list_models(), "transforms"])
    net = torch.hub.load(str(REPO), "cifar_plain20", source="local", trust_repo=True)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in resnetlab.create_model("cifar_plain20").parameters())
    r20 = AKAMASTER / "resnet20-12fca82f.th"
    if not r20.is_file():
        pytest.skip("the shared akamaster weights are not here")
    shutil.copy(r20, tmp_path / r20.name)
    monkeypatch.setenv("RESNETLAB_WEIGHTS", str(tmp_path))
    net = torch.hub.load(str(REPO), "cifar_resnet20", source="local", trust_repo=True, weights="akamaster")
    reference = resnetlab.create_model("cifar_resnet20")
    resnetlab.load_weights(reference, r20)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net.eval()(x), reference.eval()(x))
    default = torch.hub.load(str(REPO), "cifar_resnet20", source="local", trust_repo=True, pretrained=True)
    torch.testing.assert_close(default.eval()(x), reference.eval()(x))  # DEFAULT: akamaster's for the CIFAR nets


def test_the_api_refuses_bad_arguments_with_python_exceptions(tiny_cifar, tmp_path):
    """Each once a bare crash, a silent wrong run or an interpreter exit (issue 18)."""
    import pytest

    import resnetlab

    common = {"model": "cifar_resnet8", "data": str(tiny_cifar), "out": str(tmp_path / "r")}
    with pytest.raises(ValueError, match="seeds"):
        resnetlab.train(**common, seeds=0)
    with pytest.raises(TypeError, match="iters"):
        resnetlab.train(**common, iters="abc")
    with pytest.raises(TypeError, match="unknown keyword argument 'itres'"):
        resnetlab.train(**common, itres=5)
    assert not (tmp_path / "r").exists()
    with pytest.raises(TypeError, match="unknown option 'help'"):
        resnetlab.evaluate(data=str(tiny_cifar), checkpoint="x.pt", help=True)
    with pytest.raises(TypeError, match="a list of image files"):
        resnetlab.predict("a.png", model="cifar_resnet20", weights="w.th")
    with pytest.raises(ValueError, match="empty"):
        resnetlab.predict([], model="cifar_resnet20", weights="w.th")
    for topk in (0, -2):
        with pytest.raises(ValueError, match="topk"):
            resnetlab.predict(["a.png"], model="cifar_resnet20", weights="w.th", topk=topk)
    with pytest.raises(TypeError, match="network name"):
        resnetlab.create_model(None)
    for n in (-3, 0):
        with pytest.raises(ValueError, match="num_classes"):
            resnetlab.create_model("resnet18", num_classes=n)
    with pytest.raises(TypeError, match="pretrained must be True or False"):
        resnetlab.create_model("resnet18", pretrained="yes")
    with pytest.raises(TypeError, match="give one of the two"):
        resnetlab.create_model("cifar_resnet20", pretrained=True, weights="resnetlab")
    with pytest.raises(UserError, match="cifar_plain20 has no default published weights"):
        resnetlab.create_model("cifar_plain20", pretrained=True)
    with pytest.raises(TypeError, match="unknown option 'depth'"):
        resnetlab.create_model("resnet18", depth=3)
