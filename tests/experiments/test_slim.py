"""`resnetlab slim` (issue 43, item 4): a finished run keeps its final weights as safetensors and its metrics, not
its optimizer state; reports, evaluation and `reproduce` read it as before; what cannot continue says so."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.errors import UserError
from resnetlab.inference.load import load_model
from resnetlab.training.finished import final_weights, tensors_digest, weights_dropped

REPO = Path(__file__).resolve().parents[2]
RUN = "cifar_resnet8-seed0"


@pytest.fixture
def reproduced(tiny_cifar, tmp_path):
    out = tmp_path / "rep"
    argv = ["reproduce", "cifar", "--out", str(out), "--depths", "8", "--nets", "resnet", "--iters", "4",
            "--eval-every", "2", "--data", str(tiny_cifar), "--device", "cpu"]
    assert main(argv) == 0
    return out, argv


def test_a_slimmed_run_keeps_its_final_weights_and_rereports_the_same(reproduced, capsys):
    out, argv = reproduced
    run = out / "runs" / RUN
    before = load_model(str(run / "last.pt"))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = before.model(x)
    table, checkpoint_bytes = (out / "table6.md").read_text(), (run / "last.pt").stat().st_size
    assert main(["slim", str(out)]) == 0
    assert f"{run}: final.safetensors" in capsys.readouterr().out
    assert not (run / "last.pt").exists() and (run / "final.safetensors").stat().st_size < 0.6 * checkpoint_bytes
    record = json.loads((run / "final.json").read_text())
    assert record["iterations"] == 4 and record["tensors_sha256"] == tensors_digest(before.model.state_dict())
    after = load_model(final_weights(run))
    with torch.no_grad():
        torch.testing.assert_close(after.model(x), expected, rtol=0, atol=0)
    assert after.classes == before.classes and torch.equal(after.normalization.mean, before.normalization.mean)
    (out / "table6.md").unlink()
    assert main(argv) == 0  # re-reported from what is kept: nothing trains again
    assert "finished earlier, skipped" in capsys.readouterr().out
    assert (out / "table6.md").read_text() == table and (out / "figure7.png").is_file()
    assert main(["evaluate", "--checkpoint", str(run / "final.safetensors"), "--data", str(argv[argv.index("--data") + 1]),
                 "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] > 0


def test_what_a_slimmed_run_cannot_do_is_one_line(reproduced, capsys):
    out, argv = reproduced
    run = out / "runs" / RUN
    assert main(["slim", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    assert "finished and was slimmed" in capsys.readouterr().err
    assert main(["train", "--model", "cifar_resnet8", "--data", argv[argv.index("--data") + 1], "--out", str(run),
                 "--iters", "2", "--device", "cpu"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    longer = [*argv]
    longer[longer.index("--iters") + 1] = "8"
    assert main(longer) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "\n" not in err.strip()
    assert main(["slim", str(run)]) == 0 and "already slimmed" in capsys.readouterr().out
    assert main(["slim", "--drop-weights", str(run)]) == 0 and not (run / "final.safetensors").exists()
    assert json.loads((run / "final.json").read_text())["kept"].startswith("none")


def test_dropped_weights_leave_the_record_and_the_report(reproduced, capsys):
    out, argv = reproduced
    run = out / "runs" / RUN
    digest = tensors_digest(load_model(str(run / "last.pt")).model.state_dict())
    assert not weights_dropped(run)  # last.pt
    assert main(["slim", str(run)]) == 0 and not weights_dropped(run)  # final.safetensors
    assert main(["slim", "--drop-weights", str(run)]) == 0 and weights_dropped(run)
    assert not (run / "final.safetensors").exists() and json.loads((run / "final.json").read_text())["tensors_sha256"] == digest
    with pytest.raises(UserError, match="were not kept"):
        final_weights(run)
    assert main(argv) == 0  # Fig. 7's responses were measured once, beside the run: the report needs no weights
    assert (out / "report.md").is_file()


def test_an_unfinished_run_keeps_its_last_checkpoint(reproduced, capsys):
    out, _ = reproduced
    run = out / "runs" / RUN
    (run / "summary.json").unlink()  # as a run killed after its last checkpoint leaves it
    assert main(["slim", str(run)]) == 2
    assert "unfinished" in capsys.readouterr().err and (run / "last.pt").is_file()
    assert main(["slim", str(out)]) == 0  # a folder of runs: each unfinished one said, none an error
    assert "left as it is" in capsys.readouterr().out and (run / "last.pt").is_file()


def test_the_repository_is_light():
    """The tracked tree stays small enough that a device call carries it as it is (64 MiB with what it builds)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    files = [REPO / name for name in listed.decode().split("\0") if name]
    size = sum(f.stat().st_size for f in files if f.is_file())
    assert 1e6 < size < 40e6, f"the tracked tree is {size / 1e6:.1f} MB"
    finished = [f for f in files if f.name == "last.pt" and (f.parent / "summary.json").is_file()
                and json.loads((f.parent / "summary.json").read_text()).get("finished")]
    assert not finished, f"finished runs keep last.pt: {finished[:3]} (resnetlab slim them)"
