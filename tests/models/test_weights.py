import pytest
import torch
import torchvision

from resnetlab import create_model, load_weights
from resnetlab.errors import UserError
from tests.conftest import AKAMASTER


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_state_dict_loads_strictly_and_matches(name):
    tv = getattr(torchvision.models, name)().eval()
    ours = create_model(name, style="torchvision").eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), atol=1e-4, rtol=0)


def test_load_weights_reads_torchvision_files_and_names_mismatches(tmp_path):
    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = load_weights(create_model("resnet18", style="torchvision"), tmp_path / "tv.pth")
    assert torch.equal(ours.fc.weight, tv.fc.weight)
    with pytest.raises(UserError, match=r"'conv1.weight' has shape \(64, 3, 7, 7\) in the checkpoint but \(16, 3, 3, 3\)"):
        load_weights(create_model("cifar_resnet20"), tmp_path / "tv.pth")
    with pytest.raises(UserError, match="has no 'layer1.0.downsample"):
        load_weights(create_model("resnet18", shortcut="C"), tmp_path / "tv.pth")


def test_loading_never_unpickles_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_weights(create_model("cifar_resnet20"), tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        load_weights(create_model("cifar_resnet20"), tmp_path / "junk.pt")


@pytest.mark.slow
def test_akamaster_resnet20_classifies_the_shared_split_as_published(shared_cifar):
    """The proof that option A is built right: 86.04% on the 50k JPEG training images."""
    from resnetlab.data import DeviceLoader, Normalization, open_dataset
    from resnetlab.inference.scoring import evaluate

    model = load_weights(create_model("cifar_resnet20"), AKAMASTER / "resnet20-12fca82f.th")
    train = open_dataset(shared_cifar).splits["train"]
    batches = DeviceLoader(train.images, train.labels, 250, "cpu", Normalization.imagenet(), augment=False)
    result = evaluate(model, batches)
    assert result["count"] == 50000
    assert 1 - result["top1_error"] == pytest.approx(0.8604, abs=0.001)


def test_akamaster_end_padding_would_fail(shared_cifar):
    """Padding all new channels at the end computes something else with these weights."""
    from resnetlab.data import DeviceLoader, Normalization, open_dataset
    from resnetlab.inference.scoring import evaluate
    from resnetlab.models import ZeroPadShortcut

    train = open_dataset(shared_cifar).splits["train"]
    sub = train.subset(slice(0, 50000, 25))
    batches = lambda: DeviceLoader(sub.images, sub.labels, 500, "cpu", Normalization.imagenet(), augment=False)  # noqa: E731
    model = load_weights(create_model("cifar_resnet20"), AKAMASTER / "resnet20-12fca82f.th")
    good = evaluate(model, batches())["top1_error"]
    for m in model.modules():
        if isinstance(m, ZeroPadShortcut):
            m.pad_after += m.pad_before
            m.pad_before = 0
    bad = evaluate(model, batches())["top1_error"]
    assert good < 0.2 and bad > good + 0.1
