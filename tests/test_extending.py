"""The extensions README's "Extending resnetlab" shows, each done in the files it names (issues 30, 42)."""

import math

import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.models import registry
from resnetlab.models.resnet import ResNet
from resnetlab.training import schedules, settings
from resnetlab.training.config import resolve
from resnetlab.training.learning_rate import RunState, learning_rate


def test_a_schedule_is_one_function_in_schedules_py():
    """cosine was added that way: its name is a --schedule choice, its lr a pure function of the iteration."""
    assert "cosine" in settings.CHOICES["schedule"]
    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": "x", "out": "y", "iters": 100,
                                      "schedule": "cosine", "warmup": "off"})
    lrs = [learning_rate(cfg, RunState(step=s), False) for s in (0, 50, 100)]
    assert lrs == pytest.approx([0.1, 0.05, 0.0], abs=1e-12)
    assert learning_rate(cfg, RunState(step=25), False) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))

    @schedules.schedule("halving", "halve every 10 iterations", describe=lambda cfg: "halved every 10 iterations")
    def halving(cfg, step, scale):
        return cfg.lr * 0.5 ** (step // 10)

    try:
        assert schedules.SCHEDULES["halving"].lr(cfg, 25, 1.0) == pytest.approx(0.025)
    finally:
        del schedules.SCHEDULES["halving"]


def test_label_smoothing_is_one_setting(tiny_cifar, tmp_path):
    """One setting(...) line in settings.py gives the flag, the TOML key, the resume rule and the multi-seed
    rule; the step reads it."""
    f = settings.FIELDS["label_smoothing"]
    assert f.metadata["group"] == "optimizer" and "label_smoothing" in settings.TOGETHER_SAME
    assert "label_smoothing" not in settings.RESUME_CHANGEABLE and "label_smoothing" in settings.SAME_RUN
    common = dict(model="cifar_resnet8", data=str(tiny_cifar), iters=1, batch_size=32, quiet=True, log_every=1,
                  eval_every=1, fast="off", amp="off")
    resnetlab.train(out=str(tmp_path / "a"), **common)
    resnetlab.train(out=str(tmp_path / "b"), label_smoothing=0.3, **common)
    from tests.clitools import metrics

    assert metrics(tmp_path / "a")[0]["train_loss"] != metrics(tmp_path / "b")[0]["train_loss"]
    with pytest.raises(ValueError, match="label_smoothing"):
        resnetlab.train(out=str(tmp_path / "c"), label_smoothing=1.5, **common)


def test_a_network_family_is_one_decorator():
    @registry.family(r"cifar_twin(\d+)", small_input=True, recipe="cifar-paper", listed_depths=(14,))
    def cifar_twin(depth, **options):
        return registry.cifar_net(depth, residual=True, **options)

    try:
        net = resnetlab.create_model("cifar_twin14", num_classes=3)
        assert net.fc.out_features == 3 and registry.is_cifar("cifar_twin14")
        assert registry.default_recipe("cifar_twin20") == "cifar-paper" and "cifar_twin14" in resnetlab.list_models()
        assert registry.model_input("cifar_twin8") == {"size": 32, "resize": 32}
        assert registry.cifar_depth("cifar_twin110") == 110
    finally:
        registry.FAMILIES.pop()
    assert "cifar_twin14" not in resnetlab.list_models()


def test_zero_init_refuses_a_block_that_cannot_name_its_last_batchnorm():
    class Opaque(nn.Module):
        expansion = 1

        def __init__(self, in_planes, planes, stride, shortcut, residual, style):
            super().__init__()
            self.conv = nn.Conv2d(in_planes, planes, 3, stride, 1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(TypeError, match="last_bn"):
        ResNet(Opaque, [1, 1, 1], imagenet=False, num_classes=10, shortcut="A", zero_init_residual=True)
    net = resnetlab.create_model("cifar_resnet8", zero_init_residual=True)
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for layer in (net.layer1, net.layer2, net.layer3) for b in layer)


def test_library_code_sets_a_recipe_by_keyword_and_a_misspelt_setting_is_refused():
    from resnetlab.training import configure

    cfg = configure("cifar-paper", model="cifar_resnet56", data="d", out="o", iters=16000)
    assert (cfg.model, cfg.iters, cfg.milestones) == ("cifar_resnet56", 16000, [8000, 12000])
    with pytest.raises(TypeError, match="'iter' is not a setting"):
        configure("cifar-paper", model="cifar_resnet56", iter=16000)


def test_a_batch_transform_is_one_function_and_one_registry_line():
    """mixup and cutmix were added so (data/batch_transforms.py); a new one is picked up by every run whose
    setting of that name is non-zero, drawing from the generator of (seed, step)."""
    import types

    from resnetlab.data.batch import Batch
    from resnetlab.data.batch_transforms import BATCH_TRANSFORMS, BatchTransform, BatchTransforms

    def invert(batch, strength, classes, g):
        return Batch(batch.images * -strength, batch.labels, batch.targets)

    BATCH_TRANSFORMS["invert_strength"] = BatchTransform(invert, "negate the images")
    try:
        cfg = types.SimpleNamespace(seed=0, mixup_alpha=0.0, cutmix_alpha=0.0, invert_strength=2.0)
        batch = Batch(torch.ones(4, 3, 2, 2), torch.zeros(4, dtype=torch.long))
        assert torch.equal(BatchTransforms(cfg, 10)(batch, 0).images, -2 * torch.ones(4, 3, 2, 2))
    finally:
        del BATCH_TRANSFORMS["invert_strength"]


def test_an_augmentation_policy_is_one_line(monkeypatch):
    """A policy batched_policy cannot repeat runs per image, each image under its own seed."""
    from torchvision.transforms import v2

    from resnetlab.data import image_policies

    monkeypatch.setitem(image_policies.POLICIES, "augmix", lambda small: v2.AugMix())
    augment = image_policies.ImageAugment("augmix", small=True)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = augment.apply_policy(images, list(range(6)))
    assert augment.batched is None and out.shape == images.shape and not torch.equal(out, images)
    assert torch.equal(out[2], augment.apply_policy(images[2], [2]))  # the image's own draws, alone or in a batch


def test_a_weight_averager_is_one_class_and_one_registry_line():
    """The EMA was added so (training/averagers.py): the step updates what the registry builds, and its tensors
    are saved, restored and undone by the self-check with the step's own (TrainingStep.state_tensors)."""
    import types

    from resnetlab.training import averagers

    class LastWeights(averagers.ModelEMA):  # decay 0: the average is the last weights
        name = "last"

    averagers.AVERAGERS["last"] = averagers.AveragerKind(lambda cfg: True, lambda net, cfg: LastWeights(net, 0.0, 1))
    try:
        net = nn.Linear(2, 2)
        cfg = types.SimpleNamespace(model_ema=False)
        built = averagers.build(net, cfg)
        assert [a.name for a in built] == ["last"]
        with torch.no_grad():
            net.weight.add_(1.0)
        built[0].after_step(1)
        assert torch.equal(built[0].average["weight"], net.weight)
    finally:
        del averagers.AVERAGERS["last"]


def test_a_dataset_format_is_one_reader(tiny_cifar, tmp_path):
    """A new --data format is one function and one register_reader line (data/readers.py): here numpy .npz
    arrays, trained on and evaluated through the API with no other change."""
    import numpy as np

    from resnetlab.data import readers
    from resnetlab.data.arrays import ArrayDataset
    from resnetlab.data.dataset import Dataset
    from resnetlab.data.sources import open_dataset

    cifar = open_dataset(str(tiny_cifar))
    npz = tmp_path / "tiny.npz"
    np.savez(npz, train_x=cifar.splits["train"].images, train_y=cifar.splits["train"].labels,
             test_x=cifar.splits["test"].images, test_y=cifar.splits["test"].labels)

    @readers.register_reader("npz", "a .npz of train_x/train_y (and test_x/test_y) uint8 arrays")
    def read_npz(spec, path, options):
        if path.suffix != ".npz" or not path.is_file():
            return None
        z = np.load(path)
        splits = {s: ArrayDataset(z[f"{s}_x"], z[f"{s}_y"]) for s in ("train", "test") if f"{s}_x" in z}
        return Dataset(spec, "npz", cifar.classes, splits)

    try:
        ds = open_dataset(str(npz))
        assert ds.format == "npz" and ds.in_memory and len(ds.splits["test"]) == 200
        out = tmp_path / "run"
        resnetlab.train(model="cifar_resnet8", data=str(npz), out=str(out), iters=2, batch_size=32, quiet=True,
                        fast="off", amp="off", eval_every=2)
        result = resnetlab.evaluate(checkpoint=out / "last.pt", data=str(npz), split="test")
        assert result["split"] == "test" and sum(c["count"] for c in result["per_class"]) == 200
        with pytest.raises(resnetlab.UserError, match=r"\.npz of train_x"):
            open_dataset(str(tmp_path / "missing.npz"))  # the error lists what the readers accept
    finally:
        readers.READERS[:] = [r for r in readers.READERS if r.name != "npz"]
    assert [r.name for r in readers.READERS][-1] == "image-folder"  # the catch-all is tried last
