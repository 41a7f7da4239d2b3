import json

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.models import create_model
from resnetlab.multiseed import pack, stack, unpack
from resnetlab.runtime.checkpoint import load_checkpoint

# fp32: the equality of runs together and alone is a claim about the stacking, made at full precision
# (--amp auto would pick bf16 on a CPU with native bf16).
TINY = ["--model", "cifar_resnet8", "--batch-size", "32", "--lr", "0.1", "--log-every", "2", "--eval-every", "4", "--amp", "off"]


@pytest.mark.parametrize("name", ["cifar_resnet8", "cifar_plain14"])
def test_grouped_net_computes_each_net_on_its_own_channels(name):
    nets = [create_model(name) for _ in range(3)]
    for i, net in enumerate(nets):  # make the BN statistics differ too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(generator=torch.Generator().manual_seed(i))
                m.running_var.uniform_(0.5, 2)
    grouped = stack(nets)
    assert grouped.state_dict().keys() == nets[0].state_dict().keys()  # the single net's names
    torch.testing.assert_close(pack([n.state_dict() for n in nets]), grouped.state_dict(), rtol=0, atol=0)
    back = unpack(grouped.state_dict(), nets[0].state_dict(), 3)
    for net, state in zip(nets, back):
        for key, value in net.state_dict().items():
            assert torch.equal(state[key], value), key
    xs = [torch.randn(4, 3, 32, 32) for _ in nets]
    for mode in ("eval", "train"):
        for n in [*nets, grouped]:
            n.train(mode == "train")
        with torch.no_grad():
            out = grouped(torch.cat(xs, 1))
            for k, (net, x) in enumerate(zip(nets, xs)):
                torch.testing.assert_close(out[:, k], net(x), atol=1e-5, rtol=1e-4)


def _max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


def test_seeds_trained_together_match_runs_made_alone(tiny_cifar, tmp_path):
    """Grouped convolutions add in another order, so runs together equal runs alone to float precision.
    Early training at lr 0.1 amplifies any such difference (1e-7 after one step, 1e-5 to 4e-5 after two,
    depending on the thread count: the same growth as running alone on 1 thread instead of 2), so weights are
    compared after two steps (both SGD branches: the first step's and the momentum step's), against what the
    second step changed (a defect in either branch is of the step's size), and the run is then finished."""
    for seed in (0, 1):
        assert main(["train", *TINY, "--data", str(tiny_cifar), "--iters", "8", "--seed", str(seed),
                     "--stop-after", "2", "--out", str(tmp_path / f"alone{seed}")]) == 0
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--iters", "8", "--seed", "0",
                 "--stop-after", "1", "--out", str(tmp_path / "alone0-step1")]) == 0
    together = tmp_path / "together"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--iters", "8", "--seeds", "2", "--stop-after", "2",
                 "--out", str(together)]) == 0
    second_step = _max_diff(load_checkpoint(tmp_path / "alone0" / "last.pt")["model"],
                            load_checkpoint(tmp_path / "alone0-step1" / "last.pt")["model"])
    assert second_step > 1e-3  # the step moves the weights: a tolerance relative to it is meaningful
    for seed in (0, 1):
        alone = load_checkpoint(tmp_path / f"alone{seed}" / "last.pt")
        joint = load_checkpoint(together / f"seed{seed}" / "last.pt")
        assert joint["state"]["step"] == 2 and joint["config"]["seed"] == seed
        assert _max_diff(alone["model"], joint["model"]) < 0.01 * second_step
        momenta = [s["momentum_buffer"] for s in alone["optimizer"]["state"].values()]
        joint_momenta = [s["momentum_buffer"] for s in joint["optimizer"]["state"].values()]
        momentum_scale = max(m.abs().max().item() for m in momenta)
        assert max((a - b).abs().max().item() for a, b in zip(momenta, joint_momenta)) < 0.01 * momentum_scale

    # Resumed together, and alone, to the end: the same records, each run's own files.
    assert main(["train", "--resume", str(together)]) == 0
    for seed in (0, 1):
        assert main(["train", "--resume", str(tmp_path / f"alone{seed}")]) == 0
        a = [json.loads(x) for x in (tmp_path / f"alone{seed}" / "metrics.jsonl").read_text().splitlines()]
        j = [json.loads(x) for x in (together / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()]
        assert [r["iteration"] for r in a] == [r["iteration"] for r in j] == [2, 4, 6, 8]
        assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in j], abs=1e-2)
        assert load_checkpoint(together / f"seed{seed}" / "last.pt")["state"]["step"] == 8


def test_multirun_refuses_imagenet_nets(tiny_cifar, tmp_path, capsys):
    assert main(["train", "--model", "resnet18", "--data", str(tiny_cifar), "--seeds", "2", "--out", str(tmp_path / "x")]) == 2
    assert "only for the CIFAR nets" in capsys.readouterr().err


@pytest.mark.parametrize("kill", ["between the two checkpoint writes", "before the second seed's first checkpoint"])
def test_seeds_a_kill_left_apart_are_brought_together_on_resubmit(tiny_cifar, tmp_path, capsys, kill):
    """Issue 40.20: --seeds K refused every resubmit after a SIGKILL between the K checkpoint writes ("must be
    at the same iteration, not [2, 4]") or before some seed's first one ("holds 1 run(s) ... asks for 2"): a
    scheduler resubmitting never got further. The laggard now trains alone to the others' iteration first."""
    import shutil

    argv = ["train", *TINY, "--data", str(tiny_cifar), "--iters", "8", "--seeds", "2", "--resume-if-exists"]
    reference = tmp_path / "straight"
    assert main([*argv, "--out", str(reference)]) == 0
    out = tmp_path / "killed"
    assert main([*argv, "--out", str(out), "--stop-after", "2"]) == 0
    early = tmp_path / "seed1-at-2"
    shutil.copytree(out / "seed1", early)
    assert main([*argv, "--out", str(out), "--stop-after", "2"]) == 0  # both at 4
    shutil.rmtree(out / "seed1")
    if kill == "between the two checkpoint writes":
        shutil.copytree(early, out / "seed1")  # seed 0 wrote its iteration-4 checkpoint, seed 1 did not
    else:
        (out / "seed1").mkdir()
        (out / "seed1" / ".resnetlab-run").touch()  # what a start leaves before its first checkpoint
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 0
    assert "training it alone to there first" in capsys.readouterr().out
    for seed in (0, 1):
        done = load_checkpoint(out / f"seed{seed}" / "last.pt")
        assert done["state"]["step"] == 8
        assert _max_diff(done["model"], load_checkpoint(reference / f"seed{seed}" / "last.pt")["model"]) < 0.05
        iterations = [json.loads(x)["iteration"] for x in (out / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()]
        assert iterations == [2, 4, 6, 8]
