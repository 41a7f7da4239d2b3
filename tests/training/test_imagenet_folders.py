import json

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli.main import main


def imagenet_folders(root, train=4, val=2, classes=("cat", "dog"), seed=0):
    """train/ and val/ folders of JPEGs of varied sizes, each class its own mean colour."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                size = (int(rng.integers(260, 320)), int(rng.integers(260, 320)), 3)
                base = np.full(size, 40 + 150 * k // max(1, len(classes) - 1), dtype=np.int64)
                img = np.clip(base + rng.integers(-40, 40, size), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.jpg")
    return root


def test_train_and_ten_crop_evaluate_on_imagenet_style_folders(tmp_path, capsys):
    """The streaming path: train/ and val/ folders of large JPEGs through the DataLoader pipeline."""
    imagenet_folders(tmp_path / "ds")
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet18", "--recipe", "imagenet-paper", "--data", str(tmp_path / "ds"),
                 "--out", str(out), "--iters", "2", "--batch-size", "4", "--eval-every", "2", "--log-every", "1",
                 "--workers", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["val_split"] == "val" and summary["final_val_error"] is not None
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--data", str(tmp_path / "ds"), "--protocol", "10-crop",
                 "--workers", "0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["split"] == "val" and r["count"] == 4
    assert main(["predict", "--checkpoint", str(out / "last.pt"), str(tmp_path / "ds" / "val" / "cat" / "0.jpg"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] in ("cat", "dog")


IMAGENET_TINY = ["--model", "resnet18", "--recipe", "imagenet-paper", "--batch-size", "4", "--lr", "0.01", "--log-every", "1",
                 "--eval-every", "3", "--workers", "0"]


def test_folder_runs_resume_bit_exact_and_report_data_wait(tmp_path):
    from tests.clitools import metrics, same_weights, without_speed

    data = imagenet_folders(tmp_path / "ds", train=6)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *IMAGENET_TINY, "--data", str(data), "--out", str(straight), "--iters", "6"]) == 0
    assert main(["train", *IMAGENET_TINY, "--data", str(data), "--out", str(split), "--iters", "6",
                 "--stop-after", "2", "--workers", "2"]) == 0  # other workers: the same draws
    assert main(["train", "--resume", str(split)]) == 0
    assert same_weights(straight / "last.pt", split / "last.pt")
    assert without_speed(metrics(straight)) == without_speed(metrics(split))
    assert all(0 <= r["data_wait"] <= 1 for r in metrics(straight))


def test_pixel_mean_is_refused_for_image_folders_rather_than_ignored(tmp_path, capsys):
    from tests.clitools import refused

    data = imagenet_folders(tmp_path / "ds")
    refused(["train", *IMAGENET_TINY, "--data", str(data), "--out", str(tmp_path / "r"), "--normalization",
             "pixel-mean"], "--normalization pixel-mean is computed for images up to 64 px", capsys)


def test_the_fully_convolutional_form_is_the_ordinary_forward_at_224():
    import torch

    from resnetlab.inference.scoring import fully_convolutional_logits
    from resnetlab.models import create_model

    torch.manual_seed(0)
    for name in ("resnet18", "resnet50"):
        model = create_model(name).eval()
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            torch.testing.assert_close(fully_convolutional_logits(model, x), model(x), rtol=1e-4, atol=1e-4)  # sum order
            assert fully_convolutional_logits(model, torch.randn(1, 3, 320, 416)).shape == (1, 1000)


def test_an_ensemble_averages_the_softmax_of_its_models():
    import torch

    from resnetlab.inference.scoring import evaluate
    from resnetlab.models import create_model

    torch.manual_seed(0)
    a, b = create_model("cifar_resnet8").eval(), create_model("cifar_resnet8").eval()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    with torch.no_grad():
        probs = (a(x).softmax(1) + b(x).softmax(1)) / 2
    expected_loss = torch.nn.functional.nll_loss(probs.log(), y).item()
    expected_top1 = (probs.argmax(1) != y).float().mean().item()
    r = evaluate([a, b], [(x, y)])
    assert r["loss"] == pytest.approx(expected_loss, rel=1e-5) and r["top1_error"] == pytest.approx(expected_top1)
    single = evaluate(a, [(x, y)])
    assert evaluate([a, a], [(x, y)])["loss"] == pytest.approx(single["loss"], rel=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    data = imagenet_folders(root / "ds", val=1)
    for seed in (0, 1):
        assert main(["train", *IMAGENET_TINY, "--data", str(data), "--out", str(root / f"run{seed}"), "--iters", "2",
                     "--seed", str(seed)]) == 0
    return root


@pytest.mark.parametrize("protocol", ["center", "10-crop", "multiscale"])
def test_each_testing_protocol_and_an_ensemble_through_the_cli(protocol, trained, capsys):
    base = ["evaluate", "--data", str(trained / "ds"), "--workers", "0", "--json", "--protocol", protocol]
    capsys.readouterr()
    assert main([*base, "--checkpoint", str(trained / "run0" / "last.pt")]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["count"] == 2 and single["protocol"] == protocol and single["split"] == "val"
    assert main([*base, "--checkpoint", str(trained / "run0" / "last.pt"),
                 "--checkpoint", str(trained / "run1" / "last.pt")]) == 0
    ensemble = json.loads(capsys.readouterr().out)
    assert ensemble["count"] == 2 and ensemble["model"] == "resnet18 + resnet18" and len(ensemble["checkpoints"]) == 2


def test_protocols_other_than_center_are_refused_for_in_memory_data(tiny_cifar, tmp_path, capsys):
    from tests.clitools import TINY, refused

    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "2"]) == 0
    refused(["evaluate", "--checkpoint", str(tmp_path / "r" / "last.pt"), "--data", str(tiny_cifar), "--protocol",
             "multiscale"], "--protocol multiscale is for image-folder", capsys)


def test_reproduce_imagenet_end_to_end_interrupted_and_resumed(tmp_path, monkeypatch, capsys):
    """Tables 2 and 3 and Fig. 4 from tiny folders; a Ctrl-C in the third run, then the same command again
    skips the finished runs, resumes the third and writes everything."""
    from resnetlab.data import imagenet as imagenet_data

    data = imagenet_folders(tmp_path / "ds", train=4, val=1)
    out = tmp_path / "rep"
    cmd = ["reproduce", "imagenet", "--data", str(data), "--out", str(out), "--iters", "2", "--batch-size", "4",
           "--lr", "0.01", "--eval-every", "2", "--workers", "0", "--shortcuts", "A,B,C", "--device", "cpu"]
    real = imagenet_data.StreamLoader.batch
    calls = {"n": 0}

    def interrupted(self, step):
        calls["n"] += 1
        # Each run draws its first batch for the fast path's self-check, then one per step: call 9 is the
        # second step of the third run (resnet18).
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(imagenet_data.StreamLoader, "batch", interrupted)
    assert main(cmd) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert json.loads((out / "runs" / "plain34" / "summary.json").read_text())["finished"]
    assert not (out / "runs" / "resnet18" / "summary.json").exists()
    monkeypatch.setattr(imagenet_data.StreamLoader, "batch", real)
    assert main(cmd) == 0
    text = capsys.readouterr().out
    assert "plain18: finished earlier, skipped" in text and "resnet18: resuming" in text
    for name in ("table2.md", "table3.md", "figure4.png", "report.md", "results.json"):
        assert (out / name).is_file(), name
    table2, table3 = (out / "table2.md").read_text(), (out / "table3.md").read_text()
    assert all(f"| {n} |" in table2 for n in ("plain-18", "plain-34", "ResNet-18", "ResNet-34"))
    assert "27.94" in table2 and "24.19 / 7.40" in table3 and "| B |" in table3
    assert "SHORTENED: 2 iterations of batch 4" in (out / "report.md").read_text()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 6 and all(0 <= r["top1"] <= 1 and r["top5"] <= r["top1"] for r in rows)
    assert all(json.loads((out / "runs" / r["name"] / "ten_crop.json").read_text())["count"] == 2 for r in rows)


def test_reproduce_imagenet_needs_a_val_folder(tiny_cifar, tmp_path, capsys):
    from tests.clitools import refused

    refused(["reproduce", "imagenet", "--data", str(tiny_cifar), "--out", str(tmp_path / "o")], "needs an image-folder",
            capsys)
    refused(["reproduce", "imagenet", "--data", str(tiny_cifar), "--out", str(tmp_path / "o"), "--shortcuts", "D"],
            "--shortcuts takes A, B and/or C", capsys)


def test_torchrun_two_processes_train_on_image_folders(tmp_path):
    import os
    import subprocess
    import sys

    from tests.clitools import metrics

    data = imagenet_folders(tmp_path / "ds", train=4)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
                           "-m", "resnetlab", "train", *IMAGENET_TINY, "--data", str(data), "--out", str(out),
                           "--iters", "3"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["iteration"] for r in metrics(out)] == [1, 2, 3]  # one writer
    assert json.loads((out / "summary.json").read_text())["final_val_error"] is not None
