"""The weights resnetlab ships (issue 17, item 3): the 64k-iteration CIFAR ResNet-20 of results/cifar10-64k and
the 16k ResNet-56 of results/cifar10-16k, in the package as `resnetlab` weights, loadable by name, by the CLI and
by torch.hub, and as good as their reports say."""

import json
from pathlib import Path

import pytest
import torch

import resnetlab
from resnetlab.cli.main import main
from resnetlab.inference.load import load_model
from resnetlab.models import pretrained, weights_fetch
from resnetlab.training.finished import final_record, final_weights, tensors_digest
from resnetlab.models.safetensors_files import FORMAT, read_safetensors

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {("cifar_resnet20", "resnetlab"): ("cifar10-50k", "cifar_resnet20-seed0", 64000),
           ("cifar_resnet20", "resnetlab-45k"): ("cifar10-64k", "cifar_resnet20-seed0", 64000),
           ("cifar_resnet56", "resnetlab"): ("cifar10-16k", "cifar_resnet56-seed0", 16000),
           ("cifar_resnet20", "resnetlab-modern"): ("recipes", "cifar_resnet20-modern-seed0", 16000)}


@pytest.mark.parametrize("model,name", SHIPPED)
def test_the_shipped_weights_are_their_runs_final_weights(model, name):
    results, run_name, iterations = SHIPPED[model, name]
    run_dir = REPO / "results" / results / "runs" / run_name
    w = pretrained.get_weights(model, name)
    path = weights_fetch.fetch(w)  # checked by its whole sha256
    assert w.bundled and len(w.sha256) == 64
    contents = read_safetensors(path)  # safetensors: no pickle is read for named weights
    assert contents["format"] == FORMAT and "optimizer" not in contents  # weights only, no optimizer state
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] and summary["iterations"] == iterations
    # the error of what the run delivers: its weight average's where it keeps one (resnetlab-modern's EMA)
    if "train_error" in w.metrics:  # trained on all 50k: its training error, measured once by the final protocol
        assert w.metrics["train_error"] == json.loads((run_dir / "final_errors.json").read_text())["train_error"]
    else:
        assert w.metrics["top1_error"] == pytest.approx(summary.get("final_ema_val_error", summary["final_val_error"]),
                                                        abs=5e-5)
    assert w.meta["categories"] == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    record = final_record(run_dir)
    if record is not None:  # slimmed: final.json names these weights, and its digest was taken from last.pt's
        assert record["shipped"] == f"{model}:{name}" and record["iterations"] == iterations
        assert record["tensors_sha256"] == tensors_digest(contents["model"])
    run = load_model(final_weights(run_dir))  # the final iteration, not a checkpoint picked on the hold-out
    x = torch.randn(4, 3, 32, 32)
    by_name = resnetlab.create_model(model, weights=name).eval()
    by_hub = torch.hub.load(str(REPO), model, source="local", trust_repo=True, weights=name).eval()
    with torch.no_grad():
        expected = run.model.eval()(x)
        torch.testing.assert_close(by_name(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(by_hub(x), expected, rtol=0, atol=0)
    shipped = resnetlab.load(model=model, weights=name)
    assert shipped.normalization.kind == "pixel-mean" and torch.equal(shipped.normalization.mean, run.normalization.mean)


@pytest.mark.slow
def test_the_shipped_resnet20_gives_its_reported_holdout_error(shared_cifar, capsys):
    """`evaluate --weights resnetlab` on the 5k hold-out it was validated on: the error the registry states
    (measured in bf16 during training; evaluate runs fp32, so the last digits may differ)."""
    w = pretrained.get_weights("cifar_resnet20", "resnetlab-45k")
    assert main(["evaluate", "--model", "cifar_resnet20", "--weights", "resnetlab-45k", "--data", str(shared_cifar),
                 "--split", "holdout", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["count"] == 5000
    assert 1 - r["top1_accuracy"] == pytest.approx(w.metrics["top1_error"], abs=0.003)
    image = next((shared_cifar / "train" / "airplane").iterdir())
    assert main(["predict", "--model", "cifar_resnet20", "--weights", "resnetlab", str(image), "--json", "--topk", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] in w.meta["categories"]


def test_the_50k_weights_have_nothing_unseen_in_the_shared_data(shared_cifar, capsys):
    """Trained on every shared image (the paper's final protocol): evaluate says so instead of measuring seen images."""
    assert main(["evaluate", "--model", "cifar_resnet20", "--weights", "resnetlab", "--data", str(shared_cifar)]) == 2
    err = capsys.readouterr().err
    assert "nothing unseen" in err and "50,000" in err
