"""Today's recipe ingredients (issue 42) through the whole product: mixup, cutmix, TrivialAugment, random
erasing, label smoothing, an EMA of the weights, Nesterov, no weight decay on normalization layers, a linear
warm-up; each trains from the CLI, resumes bit-exactly, trains with seeds together as alone, and evaluate,
predict and export use the averaged weights."""

import json
import math

import pytest
import torch
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.models import create_model
from resnetlab.runtime.checkpoint import load_checkpoint
from resnetlab.training.config import configure
from resnetlab.training.learning_rate import RunState, learning_rate
from resnetlab.training.start import param_groups
from tests.clitools import same_weights

MODERN = ["--model", "cifar_resnet8", "--recipe", "cifar-modern", "--batch-size", "32", "--log-every", "2",
          "--eval-every", "4", "--iters", "8", "--lr-warmup-iters", "2", "--model-ema-steps", "2", "--model-ema-decay", "0.5", "--nesterov", "--fast", "off",
          "--amp", "off", "--device", "cpu", "--workers", "0"]


def _max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


def test_the_modern_recipe_trains_resumes_bit_exactly_and_logs_the_averaged_weights(tiny_cifar, tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *MODERN, "--data", str(tiny_cifar), "--out", str(straight)]) == 0
    out = capsys.readouterr().out
    assert "linear warm-up from lr x0.01 over the first" in out and "following half a cosine" in out
    assert main(["train", *MODERN, "--data", str(tiny_cifar), "--out", str(split), "--stop-after", "3"]) == 0
    assert main(["train", "--resume", str(split)]) == 0
    assert same_weights(straight / "last.pt", split / "last.pt")
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["averaged"]["ema"].keys() == b["averaged"]["ema"].keys()
    assert all(torch.equal(a["averaged"]["ema"][k], b["averaged"]["ema"][k]) for k in a["averaged"]["ema"])
    assert _max_diff(a["averaged"]["ema"], a["model"]) > 0  # the average is not the weights
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "val_error" in r]
    assert evaluated and all("ema_val_error" in r and "ema_val_loss" in r for r in evaluated)
    assert records == [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()] or \
        [{k: v for k, v in r.items() if k not in ("images_per_s", "data_wait")} for r in records] == \
        [{k: v for k, v in r.items() if k not in ("images_per_s", "data_wait")}
         for r in (json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines())]


def test_seeds_trained_together_match_runs_made_alone_with_every_ingredient(tiny_cifar, tmp_path):
    """As test_multirun's: two steps, compared against what the second step changed; the averages too."""
    for seed in (0, 1):
        assert main(["train", *MODERN, "--data", str(tiny_cifar), "--seed", str(seed), "--stop-after", "2",
                     "--out", str(tmp_path / f"alone{seed}")]) == 0
    assert main(["train", *MODERN, "--data", str(tiny_cifar), "--seed", "0", "--stop-after", "1",
                 "--out", str(tmp_path / "step1")]) == 0
    assert main(["train", *MODERN, "--data", str(tiny_cifar), "--seeds", "2", "--stop-after", "2",
                 "--out", str(tmp_path / "together")]) == 0
    second_step = _max_diff(load_checkpoint(tmp_path / "alone0" / "last.pt")["model"],
                            load_checkpoint(tmp_path / "step1" / "last.pt")["model"])
    assert second_step > 1e-4
    for seed in (0, 1):
        alone = load_checkpoint(tmp_path / f"alone{seed}" / "last.pt")
        joint = load_checkpoint(tmp_path / "together" / f"seed{seed}" / "last.pt")
        assert _max_diff(alone["model"], joint["model"]) < 0.01 * second_step
        assert _max_diff(alone["averaged"]["ema"], joint["averaged"]["ema"]) < 0.01 * second_step


def test_evaluate_predict_and_export_use_the_averaged_weights_and_say_so(tiny_cifar, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *MODERN, "--data", str(tiny_cifar), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(tiny_cifar), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["weights"] == "averaged (ema)"
    final = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert measured["loss"] == pytest.approx(final["ema_val_loss"], rel=1e-4)  # the averaged weights' loss
    assert measured["loss"] != pytest.approx(final["val_loss"], rel=1e-4)
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--format", "torchscript", "--out",
                 str(tmp_path / "m.pt")]) == 0
    assert "averaged (ema)" in capsys.readouterr().out
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    assert main(["predict", "--checkpoint", str(run / "last.pt"), str(tmp_path / "red.png"), "--json"]) == 0
    said = capsys.readouterr()
    assert "averaged weights (ema)" in said.err and json.loads(said.out)[0]["top"]


def test_normalization_layers_and_biases_take_their_own_weight_decay_and_nesterov_its_rule():
    model = create_model("cifar_resnet8")
    cfg = configure("cifar-modern", model="cifar_resnet8")
    decay_of = {id(p): g.get("weight_decay", cfg.weight_decay) for g in param_groups(model, cfg) for p in g["params"]}
    for name, p in model.named_parameters():
        expected = 0.0 if ("bn" in name or name.endswith(".bias")) else cfg.weight_decay
        assert decay_of[id(p)] == expected, name
    paper = configure("cifar-paper", model="cifar_resnet8")
    assert {g.get("weight_decay", 1e-4) for g in param_groups(model, paper)} == {1e-4}


def test_the_linear_warm_up_rises_from_a_hundredth_and_scales_with_the_run():
    cfg = configure("cifar-modern", iters=16000)
    assert cfg.lr_warmup_iters == 133  # 533 of 64k
    lrs = [learning_rate(cfg, RunState(step=s), False) for s in (0, 66, 133, 8000)]
    cosine = [0.1 * (1 + math.cos(math.pi * s / 16000)) / 2 for s in (0, 66, 133, 8000)]
    assert lrs[0] == pytest.approx(0.001) and lrs[1] == pytest.approx(cosine[1] * (0.01 + 0.99 * 66 / 133))
    assert lrs[2] == pytest.approx(cosine[2]) and lrs[3] == pytest.approx(0.05)  # after it: the cosine alone
    assert cfg.model_ema_decay == pytest.approx(1 - 1 / (78 / 4), abs=1e-4)  # the EMA's horizon follows too


@pytest.mark.parametrize("flags, said", [
    (["--mixup-alpha", "-0.2"], "--mixup-alpha cannot be negative"),
    (["--random-erase", "1.5"], "--random-erase must be in [0, 1]"),
    (["--model-ema-decay", "1"], "--model-ema-decay must be in [0, 1)"),
    (["--model-ema-steps", "0"], "--model-ema-steps must be a positive"),
    (["--lr-warmup-iters", "10", "--iters", "8"], "--lr-warmup-iters must be fewer than the run's 8 iterations"),
    (["--nesterov", "--momentum", "0"], "--nesterov is SGD's momentum of Nesterov"),
    (["--norm-weight-decay", "-2"], "--norm-weight-decay must be 0 or more"),
    (["--auto-augment", "augmix"], "--auto-augment"),
])
def test_bad_values_are_one_line_naming_the_flag(tiny_cifar, tmp_path, capsys, flags, said):
    args = ["train", "--model", "cifar_resnet8", "--iters", "8", "--data", str(tiny_cifar), "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as e:
        _exit(main([*args, *flags]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and said in err and "Traceback" not in err


def test_a_bad_value_in_a_config_file_or_the_api_is_named_in_its_own_terms(tiny_cifar, tmp_path, capsys):
    import resnetlab

    config = tmp_path / "c.toml"
    config.write_text("[data]\nmixup_alpha = -1.0\n")
    with pytest.raises(SystemExit):
        _exit(main(["train", "--config", str(config), "--data", str(tiny_cifar), "--out", str(tmp_path / "r")]))
    assert f"--config {config}: mixup_alpha = -1.0: cannot be negative" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"train: mixup_alpha=-1.0: cannot be negative"):
        resnetlab.train(model="cifar_resnet8", data=str(tiny_cifar), out=str(tmp_path / "r"), mixup_alpha=-1.0)


def _exit(code):
    raise SystemExit(code)


def test_torchrun_with_todays_ingredients_resumes_bit_identically(tiny_cifar, tmp_path):
    """cifar-modern under torchrun (2 ranks): mixup/cutmix drawn per (seed, step, rank), the policies per image,
    the EMA on every rank; stopped at 4 and resumed, the weights and their average equal a straight run's."""
    import os
    import subprocess
    import sys

    from resnetlab.runtime.checkpoint import load_checkpoint

    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
              "-m", "resnetlab", "train"]
    run = ["--recipe", "cifar-modern", "--model", "cifar_resnet8", "--batch-size", "32", "--log-every", "2",
           "--eval-every", "4", "--workers", "0", "--fast", "off", "--amp", "off", "--model-ema-steps", "2",
           "--model-ema-decay", "0.5",
           "--data", str(tiny_cifar), "--iters", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args in ([*run, "--out", str(tmp_path / "straight")], [*run, "--out", str(tmp_path / "split"),
                 "--stop-after", "4"], ["--resume", str(tmp_path / "split")]):
        done = subprocess.run([*launch, *args], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    straight, split = (load_checkpoint(tmp_path / name / "last.pt") for name in ("straight", "split"))
    assert split["state"]["step"] == 8 and set(straight["averaged"]) == {"ema"}
    for a, b in ((straight["model"], split["model"]), (straight["averaged"]["ema"], split["averaged"]["ema"])):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ema = straight["averaged"]["ema"]
    assert not all(torch.equal(straight["model"][k], ema[k]) for k in ema)  # an average, not the last weights
