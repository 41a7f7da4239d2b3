"""A fine-tune sized to the data (issue 41.3): --epochs beside --iters, the finetune recipe's length from the
folder's size, short runs not compiled, --opt adamw with its own defaults, and --layer-decay as timm means it."""

import math

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.errors import UserError
from resnetlab.models import create_model
from resnetlab.training.config import configure, resolve
from resnetlab.training.learning_rate import FINETUNE_ITERS, with_epochs
from resnetlab.training.start import lr_factors, param_groups
from tests.clitools import same_weights

FAST = ["--batch-size", "16", "--log-every", "2", "--fast", "off", "--device", "cpu", "--workers", "0"]


def test_epochs_become_iterations_once_the_images_are_counted_and_the_milestones_follow():
    cfg = configure("cifar-paper", model="cifar_resnet8", epochs=2.0, batch_size=100)
    sized = with_epochs(cfg, 4500)
    assert sized.iters == 90 and sized.milestones == [45, 68]
    given = with_epochs(configure("cifar-paper", model="cifar_resnet8", epochs=2.0, milestones=[10]), 6400)
    assert given.milestones == [10]  # milestones given stay
    with pytest.raises(UserError, match="--iters or as --epochs, not both"):
        configure("cifar-paper", iters=100, epochs=3.0)


def test_the_finetune_recipe_is_thirty_epochs_within_its_bounds_and_iters_overrides_it():
    tune = resolve("finetune", {}, {"model": "cifar_resnet8", "weights": "resnetlab", "normalization": "channel"})
    assert tune.epochs == 30
    assert with_epochs(tune, 540).iters == math.ceil(30 * 540 / 128)        # a user's folder: 127 iterations
    assert with_epochs(tune, 45000).iters == FINETUNE_ITERS[1]              # CIFAR-size data: at most 4,000
    assert with_epochs(tune, 100).iters == FINETUNE_ITERS[0]                # a tiny folder: at least 100
    fixed = resolve("finetune", {}, {"model": "cifar_resnet8", "weights": "resnetlab", "iters": 50,
                                     "normalization": "channel"})
    assert fixed.epochs == 0 and with_epochs(fixed, 540).iters == 50


def test_a_fine_tune_of_a_small_folder_is_short_and_not_compiled(photos96, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet20", "--weights", "resnetlab", "--data", str(photos96), "--out",
                 str(run), "--batch-size", "16", "--device", "cpu", "--workers", "0", "--eval-every", "100"]) == 0
    out = capsys.readouterr().out
    # 48 images, 30 epochs of batch 16 = 90 iterations, raised to the recipe's 100
    assert "100 iterations of batch 16" in out and "eager (100 iterations are too few to repay compiling" in out
    assert torch.load(run / "last.pt", weights_only=True)["config"]["iters"] == 100


def test_adamw_takes_its_own_defaults_and_resumes_exactly(photos96, tmp_path, capsys):
    cfg = resolve("finetune", {}, {"model": "cifar_resnet8", "weights": "resnetlab", "opt": "adamw",
                                   "normalization": "channel"})
    assert cfg.lr == pytest.approx(1e-4) and cfg.head_lr == pytest.approx(1e-3) and cfg.weight_decay == 0.05
    assert resolve("finetune", {}, {"model": "cifar_resnet8", "weights": "resnetlab", "opt": "adamw", "lr": 0.003,
                                    "normalization": "channel"}).lr == 0.003
    args = ["--model", "cifar_resnet8", "--data", str(photos96), "--opt", "adamw", "--iters", "6", "--eval-every", "3",
            *FAST]
    assert main(["train", *args, "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "split"), "--stop-after", "3"]) == 0
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    assert same_weights(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt")
    state = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["optimizer"]["state"]
    assert "exp_avg_sq" in next(iter(state.values()))
    assert "adamw, lr 0.000125 (0.001 x 16/128: the recipe's lr for --opt adamw" in capsys.readouterr().out


def test_layer_decay_is_timms_per_block_factor_with_the_head_at_its_own_lr():
    model = create_model("cifar_resnet20", num_classes=4)
    cfg = configure("finetune", model="cifar_resnet20", layer_decay=0.5, lr=0.01, head_lr=0.1, weights="resnetlab",
                    normalization="channel")
    factors = lr_factors(model, cfg)
    # 9 blocks: the last block one step below the classifier, the stem nine
    assert factors["layer3.2.conv1.weight"] == 0.5 and factors["layer1.0.conv1.weight"] == 0.5 ** 9
    assert factors["conv1.weight"] == 0.5 ** 10 and factors["fc.weight"] == 10.0
    groups = param_groups(model, cfg)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters())) and len(groups) == 11
    for group in groups:
        assert group.get("lr", cfg.lr) == pytest.approx(cfg.lr * group["lr_factor"])
    with pytest.raises(UserError, match="--layer-decay must be in"):
        configure("finetune", layer_decay=1.5, weights="resnetlab", normalization="channel")


def test_crop_scale_is_a_seeded_random_resized_crop_in_memory_and_streamed(photos96, tmp_path, capsys):
    import numpy as np

    from resnetlab.data import DeviceLoader, Normalization
    from resnetlab.data.device_loader import crop_boxes, resized_crops
    from resnetlab.data.folders import decode
    from resnetlab.data.imagenet import sample_generator, train_transform

    boxes = crop_boxes(1000, 0.08, torch.Generator().manual_seed(0))
    half_w, half_h, cx, cy = boxes.T
    assert bool(((cx.abs() + half_w <= 1 + 1e-6) & (cy.abs() + half_h <= 1 + 1e-6)).all())
    assert 0.08 <= float((half_w * half_h).min()) and float((half_w * half_h).max()) <= 1
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    whole = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2)
    assert torch.equal(resized_crops(images, whole, torch.tensor([False, True])),
                       torch.stack([images[0], images[1].flip(-1)]).float())  # the whole image, mirrored or not
    arrays = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    norm = Normalization.fit("channel", arrays)
    batches = [DeviceLoader(arrays, np.arange(64) % 4, 16, "cpu", norm, augment=True, seed=3, crop_scale=0.35)
               .batch(5)[0] for _ in range(2)]
    plain = DeviceLoader(arrays, np.arange(64) % 4, 16, "cpu", norm, augment=True, seed=3).batch(5)[0]
    assert torch.equal(*batches) and batches[0].shape == plain.shape and not torch.equal(batches[0], plain)
    crop = train_transform(48, crop_scale=0.35)
    image = decode(next((photos96 / "train" / "class0").iterdir()))
    one, two = (crop(image, sample_generator(0, 1, 2)) for _ in range(2))
    assert one.shape == (3, 48, 48) and torch.equal(one, two)
    assert main(["train", "--model", "cifar_resnet8", "--data", str(photos96), "--out", str(tmp_path / "r"),
                 "--crop-scale", "1.5", *FAST]) == 2
    assert "--crop-scale must be in [0, 1]" in capsys.readouterr().err
