"""Starting from trained weights and training on one's own classes (issue 31)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.cli.main import main
from resnetlab.models.pretrained import get_weights
from resnetlab.runtime.checkpoint import load_checkpoint
from resnetlab.models.weight_files import read_checkpoint
from tests.clitools import refused
from tests.conftest import REPO

SHIPPED_R20 = REPO / "src" / "resnetlab" / "weights" / get_weights("cifar_resnet20", "resnetlab").filename
SHIPPED_R56 = REPO / "src" / "resnetlab" / "weights" / "cifar_resnet56-resnetlab-16k.safetensors"
FAST = ["--batch-size", "16", "--workers", "0", "--fast", "off", "--amp", "off", "--eval-every", "4", "--log-every", "2"]


@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    """Three classes of their own, 24 images each (a folder of 32x32 PNGs)."""
    root = tmp_path_factory.mktemp("animals")
    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog", "frog"]):
        (root / name).mkdir()
        for i in range(24):
            img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8) + np.uint8(60 * k)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tuned(animals, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "run"
    assert main(["train", "--model", "cifar_resnet20", "--weights", "resnetlab", "--data", str(animals), "--out",
                 str(out), "--iters", "8", "--freeze", "stem,layer1", *FAST]) == 0
    return out


def test_a_new_classifier_and_the_backbone_from_the_weights(tuned, capsys):
    ckpt = load_checkpoint(tuned / "last.pt")
    shipped = read_checkpoint(SHIPPED_R20)["model"]
    assert ckpt["model"]["fc.weight"].shape == (3, 64) and ckpt["classes"] == ["cat", "dog", "frog"]
    cfg = json.loads((tuned / "config.json").read_text())
    assert cfg["recipe"] == "finetune" and cfg["weights"] == "resnetlab"
    assert ckpt["started_from"]["sha256"] == get_weights("cifar_resnet20", "resnetlab").sha256
    # frozen: bit-identical after training, BatchNorm statistics included; the rest trained
    for key in ("conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.2.conv2.weight", "layer1.0.bn1.running_var"):
        assert torch.equal(ckpt["model"][key], shipped[key]), key
    assert not torch.equal(ckpt["model"]["layer3.2.conv2.weight"], shipped["layer3.2.conv2.weight"])


def test_the_preprocessing_follows_the_weights(tuned):
    ckpt = load_checkpoint(tuned / "last.pt")
    shipped = read_checkpoint(SHIPPED_R20)["normalization"]
    assert ckpt["normalization"]["kind"] == "pixel-mean" and torch.equal(ckpt["normalization"]["mean"], shipped["mean"])


def test_evaluate_predict_and_export_use_the_runs_own_classes(tuned, animals, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(tuned / "last.pt"), str(animals / "dog" / "0.png"), "--json",
                 "--topk", "3"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert {t["class"] for t in top} == {"cat", "dog", "frog"}
    assert main(["evaluate", "--checkpoint", str(tuned / "last.pt"), "--data", str(animals), "--split", "holdout",
                 "--json"]) == 0
    assert [c["class"] for c in json.loads(capsys.readouterr().out)["per_class"]] == ["cat", "dog", "frog"]
    r = resnetlab.export(tmp_path / "t.pt2", checkpoint=tuned / "last.pt")
    assert r["max_difference"] < 1e-4


def test_the_same_classes_keep_the_classifier(tiny_cifar, tmp_path, capsys):
    assert main(["train", "--model", "cifar_resnet20", "--weights", str(SHIPPED_R20), "--data", str(tiny_cifar),
                 "--out", str(tmp_path / "r"), "--iters", "2", *FAST]) == 0
    assert "the classifier too (the same 10 classes)" in capsys.readouterr().out


def test_a_head_lr_of_its_own_and_linear_probing(animals, tmp_path):
    summary = resnetlab.train(model="cifar_resnet20", weights=get_weights("cifar_resnet20", "resnetlab"),
                              data=str(animals), out=str(tmp_path / "probe"), iters=4, freeze="backbone",
                              head_lr=0.2, lr=0.01, batch_size=16, workers=0, fast="off", amp="off", quiet=True)
    assert summary["finished"]
    ckpt = load_checkpoint(tmp_path / "probe" / "last.pt")
    shipped = read_checkpoint(SHIPPED_R20)["model"]
    assert all(torch.equal(ckpt["model"][k], v) for k, v in shipped.items() if not k.startswith("fc."))
    groups = ckpt["optimizer"]["param_groups"]
    assert len(groups) == 1 and groups[0]["lr"] == pytest.approx(0.2 / 100)  # the head alone, after 2 drops


@pytest.mark.parametrize("extra,message", [
    (["--model", "cifar_resnet20", "--weights", str(SHIPPED_R56)], "cifar_resnet56's weights"),
    (["--model", "cifar_resnet20", "--weights", "IMAGENET1K_V2"], "no weights named"),
    (["--model", "cifar_resnet20", "--weights", "resnetlab", "--freeze", "layer9"], "its stages: stem, layer1"),
    (["--model", "cifar_resnet20", "--normalization", "weights"], "none are given"),
])
def test_bad_starts_are_one_line(extra, message, animals, tmp_path, capsys):
    refused(["train", *extra, "--data", str(animals), "--out", str(tmp_path / "r"), "--iters", "2", *FAST],
            message, capsys)


def test_imagenet_weights_do_not_fit_a_cifar_net(animals, tmp_path, capsys):
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    refused(["train", "--model", "cifar_resnet20", "--weights", str(path), "--data", str(animals), "--out",
             str(tmp_path / "r"), "--iters", "2", *FAST], "does not fit this network", capsys)


def test_weights_cannot_change_on_resume_and_one_class_is_refused(tuned, tmp_path, capsys):
    refused(["train", "--resume", str(tuned), "--weights", "akamaster"], "cannot change when resuming", capsys)
    one = tmp_path / "one" / "cat"
    one.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(one / f"{i}.png")
    refused(["train", "--model", "cifar_resnet20", "--weights", "resnetlab", "--data", str(one.parent), "--out",
             str(tmp_path / "r"), "--iters", "2", *FAST], "at least 2", capsys)


def test_create_model_gives_the_backbone_with_a_new_classifier():
    net = resnetlab.create_model("cifar_resnet20", weights="resnetlab", num_classes=5)
    shipped = read_checkpoint(SHIPPED_R20)["model"]
    assert net.fc.out_features == 5 and torch.equal(net.state_dict()["layer3.2.conv2.weight"], shipped["layer3.2.conv2.weight"])


def test_seeds_together_and_exact_resume_hold_when_starting_from_weights(animals, tmp_path):
    common = ["train", "--model", "cifar_resnet20", "--weights", "resnetlab", "--data", str(animals), "--iters", "6",
              *FAST]
    assert main([*common, "--seeds", "2", "--out", str(tmp_path / "seeds")]) == 0
    assert {load_checkpoint(tmp_path / "seeds" / f"seed{k}" / "last.pt")["classes"][0] for k in (0, 1)} == {"cat"}
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert main([*common, "--out", str(tmp_path / "halves"), "--stop-after", "3"]) == 0
    assert main(["train", "--resume", str(tmp_path / "halves")]) == 0
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "halves" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_frozen_stages_stay_frozen_for_seeds_trained_together(animals, tmp_path):
    """--freeze with --seeds K: each run's frozen tensors and BatchNorm statistics are the weights' own, bit for
    bit, and the runs equal runs made alone (to the float precision grouped convolutions add in)."""
    common = ["train", "--model", "cifar_resnet20", "--weights", "resnetlab", "--data", str(animals), "--iters", "4",
              "--freeze", "stem,layer1", *FAST]
    assert main([*common, "--seeds", "2", "--out", str(tmp_path / "together")]) == 0
    shipped = read_checkpoint(SHIPPED_R20)["model"]
    frozen = [k for k in shipped if k.startswith(("conv1.", "bn1.", "layer1.")) and not k.endswith("num_batches_tracked")]
    for seed in (0, 1):
        assert main([*common, "--seed", str(seed), "--out", str(tmp_path / f"alone{seed}")]) == 0
        joint = load_checkpoint(tmp_path / "together" / f"seed{seed}" / "last.pt")
        alone = load_checkpoint(tmp_path / f"alone{seed}" / "last.pt")
        assert all(torch.equal(joint["model"][k], shipped[k]) for k in frozen)  # running statistics included
        assert not torch.equal(joint["model"]["layer2.0.conv1.weight"], shipped["layer2.0.conv1.weight"])
        assert max((joint["model"][k].float() - alone["model"][k].float()).abs().max().item()
                   for k in alone["model"] if alone["model"][k].is_floating_point()) < 1e-4
        assert len(joint["optimizer"]["state"]) == len(alone["optimizer"]["state"])  # no momentum for frozen ones


@pytest.mark.parametrize("given", [str(SHIPPED_R20), "resnetlab"])
def test_weights_are_read_and_hashed_once(given, animals, tmp_path, monkeypatch):
    """A weights file, or published weights by name (fetch checks their sha256, which the start then reuses)."""
    from resnetlab.data import download
    from resnetlab.models import pretrained as pretrained_module
    from resnetlab.models import weights as weights_module
    from resnetlab.training import start as start_module

    calls = {"read": 0, "hash": 0}

    def counted(kind, real):
        def wrapper(*args, **kwargs):
            calls[kind] += 1
            return real(*args, **kwargs)
        return wrapper

    for module in (start_module, weights_module, pretrained_module):
        monkeypatch.setattr(module, "read_checkpoint", counted("read", module.read_checkpoint))
    monkeypatch.setattr(start_module, "file_digest", counted("hash", start_module.file_digest))
    monkeypatch.setattr(download, "file_digest", counted("hash", download.file_digest))
    assert main(["train", "--model", "cifar_resnet20", "--weights", given, "--data", str(animals),
                 "--out", str(tmp_path / "r"), "--iters", "1", *FAST]) == 0
    assert calls == {"read": 1, "hash": 1}
