"""Careless or hostile command lines: one line naming the option or file, exit code 2, nothing lost."""

import errno
import json
import os

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.runtime import checkpoint as ckpt_module
from resnetlab.runtime.checkpoint import load_checkpoint
from tests.clitools import TINY, refused
from tests.conftest import AKAMASTER

AKAMASTER_R20 = AKAMASTER / "resnet20-12fca82f.th"


@pytest.fixture(scope="module")
def run(tiny_cifar, tmp_path_factory):
    """A finished tiny run to evaluate, export and resume."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "4"]) == 0
    return out


@pytest.mark.parametrize("flags,message", [
    (["--lr", "nan"], "--lr must be"),
    (["--lr", "abc"], "invalid float value"),
    (["--momentum", "nan"], "--momentum must be"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    (["--weight-decay", "-1"], "cannot be negative"),
    (["--iters", "-5"], "--iters must be a positive"),
    (["--batch-size", "0"], "--batch-size must be a positive"),
    (["--seed", str(2**64)], "--seed must be a whole number in [0, 2**63)"),
    (["--seed", "-1"], "--seed must be"),
    (["--milestones", "a,b"], "expected comma-separated whole numbers"),
    (["--milestones", "30,10"], "--milestones must be increasing"),
    (["--holdout", "-1"], "cannot be negative"),
    (["--val", "holdout", "--holdout", "0"], "--val holdout needs a hold-out"),
    (["--warmup-until-error", "2"], "--warmup-until-error must be in (0, 1]"),
    (["--stop-after", "0"], "--stop-after must be a positive"),
])
def test_bad_numbers_are_refused_in_one_line(flags, message, tiny_cifar, tmp_path, capsys):
    refused(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), *flags], message, capsys)
    assert not (tmp_path / "r").exists()


def test_an_unknown_model_is_refused_before_any_data_is_read(tiny_cifar, tmp_path, monkeypatch, capsys):
    from resnetlab.training import batches

    monkeypatch.setattr(batches, "open_dataset", lambda *a, **kw: pytest.fail("the data was read"))
    refused(["train", "--model", "cifar_resnet2O", "--data", str(tiny_cifar), "--out", str(tmp_path / "r")],
            "did you mean", capsys)
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_or_cannot_be_made(tiny_cifar, tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    refused(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "file")], "a file is there", capsys)
    assert (tmp_path / "file").read_text() == "keep"
    refused(["train", *TINY, "--data", str(tiny_cifar), "--out", "/proc/resnetlab/run"], "cannot write there", capsys)


@pytest.mark.parametrize("text,message", [
    ('lr = "fast"\n', "lr = 'fast': expected a finite number"),
    ("batch_size = 12.5\n", "batch_size = 12.5: expected a whole number"),
    ("iters = true\n", "expected a whole number"),
    ('milestones = [1, "a"]\n', "expected a list of whole numbers"),
    ("tensorboard = 1\n", "expected true or false"),
    ("lr = nan\n", "expected a finite number"),
])
def test_toml_values_of_the_wrong_type(text, message, tiny_cifar, tmp_path, capsys):
    (tmp_path / "c.toml").write_text(text)
    refused(["train", "--config", str(tmp_path / "c.toml"), "--data", str(tiny_cifar), "--out", str(tmp_path / "r")],
            message, capsys)


def test_config_that_is_a_folder_or_binary(tiny_cifar, tmp_path, capsys):
    refused(["train", "--config", str(tmp_path), "--data", str(tiny_cifar)], "a folder, not a TOML file", capsys)
    (tmp_path / "c.toml").write_bytes(os.urandom(64) + b"\xff\xfe")
    refused(["train", "--config", str(tmp_path / "c.toml"), "--data", str(tiny_cifar)], "not a text file", capsys)


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_last_pt(tiny_cifar, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(out), "--iters", "8", "--stop-after", "4"]) == 0
    before = (out / "last.pt").read_bytes()

    def full(obj, f, *a, **kw):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_module.torch, "save", full)
    capsys.readouterr()
    refused(["train", "--resume", str(out)], "the disk is full", capsys)
    assert (out / "last.pt").read_bytes() == before
    assert not list(out.glob(".*.tmp*"))


def test_damaged_config_json_on_resume(run, tmp_path, capsys):
    damaged = tmp_path / "run"
    damaged.mkdir()
    for p in run.iterdir():
        if p.is_file():
            (damaged / p.name).write_bytes(p.read_bytes())
    (damaged / "config.json").write_text('{"model": "cifar_resnet8", "iters": ')
    refused(["train", "--resume", str(damaged)], "config.json is damaged", capsys)
    (damaged / "config.json").write_text(json.dumps({"model": "cifar_resnet8", "iters": "many"}))
    refused(["train", "--resume", str(damaged)], "iters = 'many'", capsys)


def test_hand_made_checkpoints_are_refused_naming_the_missing_key(run, tmp_path, tiny_cifar, capsys):
    ckpt = load_checkpoint(run / "last.pt")
    del ckpt["normalization"]
    torch.save(ckpt, tmp_path / "hand.pt")
    refused(["evaluate", "--checkpoint", str(tmp_path / "hand.pt"), "--data", str(tiny_cifar)],
            "has no 'normalization' entry", capsys)
    resumable = tmp_path / "noopt"
    resumable.mkdir()
    ckpt = load_checkpoint(run / "last.pt")
    del ckpt["optimizer"]
    torch.save(ckpt, resumable / "last.pt")
    refused(["train", "--resume", str(resumable)], "has no 'optimizer' entry", capsys)


def test_random_bytes_a_folder_and_a_malicious_pickle_as_checkpoint(run, tiny_cifar, tmp_path, monkeypatch, capsys):
    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    err = refused(["evaluate", "--checkpoint", str(tmp_path / "random.pt"), "--data", str(tiny_cifar)],
                  "cannot read checkpoint", capsys)
    assert "weights_only" not in err
    refused(["evaluate", "--checkpoint", str(run), "--data", str(tiny_cifar)],
            f"is a folder, not a checkpoint file or a model folder (config.json + model.safetensors) (did you mean "
            f"{run / 'last.pt'}?)", capsys)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    err = refused(["predict", "--checkpoint", str(tmp_path / "evil.pt"), __file__], "nothing in it was run", capsys)
    assert "weights_only" not in err
    assert not (tmp_path / "PWNED").exists()


def test_residual_weights_loaded_into_a_plain_net_warn(tiny_cifar):
    from resnetlab.inference.load import load_model

    if not AKAMASTER_R20.is_file():
        pytest.skip("the shared akamaster weights are not here")
    with pytest.warns(UserWarning, match="trained as cifar_resnet20 but are loaded into cifar_plain20"):
        load_model(model="cifar_plain20", weights=str(AKAMASTER_R20))


def test_own_checkpoint_of_a_resnet_loaded_as_plain_warns(run):
    from resnetlab.inference.load import load_model

    with pytest.warns(UserWarning, match="trained as cifar_resnet8 but are loaded into cifar_plain8"):
        load_model(model="cifar_plain8", weights=str(run / "last.pt"))


def test_export_never_overwrites_its_input_and_asks_before_replacing(run, tmp_path, capsys):
    last = run / "last.pt"
    before = last.read_bytes()
    refused(["export", "--checkpoint", str(last), "--out", str(last), "--no-check"], "is a file this command reads", capsys)
    assert last.read_bytes() == before
    (tmp_path / "m.onnx").write_text("old")
    refused(["export", "--checkpoint", str(last), "--out", str(tmp_path / "m.onnx"), "--no-check"],
            "exists; add --force", capsys)
    assert (tmp_path / "m.onnx").read_text() == "old"
    refused(["export", "--checkpoint", str(last), "--out", str(tmp_path)], "is a folder", capsys)
    refused(["export", "--checkpoint", str(last), "--out", str(tmp_path / "no" / "m.onnx")], "does not exist", capsys)
    assert main(["export", "--checkpoint", str(last), "--out", str(tmp_path / "m.onnx"), "--force", "--no-check"]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 1000


def test_the_largest_seed_trains(tiny_cifar, tmp_path):
    """The epoch streams derive from seed * stride + epoch, which must stay within a generator's 63 bits."""
    assert main(["train", *TINY, "--data", str(tiny_cifar), "--out", str(tmp_path / "r"), "--iters", "2",
                 "--seed", str(2**63 - 1)]) == 0
