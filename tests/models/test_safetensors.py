"""Weights as safetensors and model folders (issue 43): written by export, read by every route (load,
create_model, --weights, predict, hf-hub: names from the Hub's cache), refused in one line when damaged."""

import json
import pickle
import struct

import pytest
import torch

import resnetlab
from resnetlab.cli.main import main
from resnetlab.models import create_model
from resnetlab.models.safetensors_files import read_safetensors


@pytest.fixture(scope="module")
def run(tiny_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("st") / "run"
    resnetlab.train(model="cifar_resnet8", data=str(tiny_cifar), out=str(out), iters=2, batch_size=32, quiet=True,
                    fast="off", amp="off", eval_every=2)
    return out


def _logits(loaded, x):
    with torch.no_grad():
        return loaded.model.eval()(x)


def test_a_run_exported_as_safetensors_loads_everywhere_with_the_same_outputs(run, tmp_path, capsys):
    out = tmp_path / "r8.safetensors"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0  # format from suffix
    assert "safetensors" in capsys.readouterr().out
    assert out.read_bytes()[8:9] == b"{"  # a JSON header, not a pickle or zip
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    original = resnetlab.load(run / "last.pt")
    for loaded in (resnetlab.load(out), resnetlab.load(weights=out), resnetlab.load(model="cifar_resnet8", weights=out)):
        assert torch.equal(_logits(loaded, x), _logits(original, x))
        assert loaded.classes == original.classes and torch.equal(loaded.normalization.mean, original.normalization.mean)
    net = create_model("cifar_resnet8", weights=out)
    assert torch.equal(net.eval()(x), _logits(original, x))
    meta = read_safetensors(out)
    assert meta["model_name"] == "cifar_resnet8" and meta["trained"]["iteration"] == 2 and len(meta["source_sha256"]) == 64


def test_damaged_safetensors_are_one_line_and_nothing_runs(tmp_path, capsys):
    class Boom:
        def __reduce__(self):
            return (exec, ("open('/tmp/resnetlab-pwned', 'w')",))

    renamed = tmp_path / "pickle.safetensors"
    renamed.write_bytes(pickle.dumps({"x": Boom()}))
    good = tmp_path / "good.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.ones(4, 4)}, str(good))
    data = good.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["w"]["data_offsets"] = [0, 10**9]  # claims a gigabyte the file does not have
    text = json.dumps(header).encode()
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-10])
    for bad in (renamed, lying, truncated):
        capsys.readouterr()
        assert main(["predict", "--model", "cifar_resnet8", "--weights", str(bad), str(good)]) == 2
        err = capsys.readouterr().err.strip()
        assert "not a valid safetensors file" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not __import__("os").path.exists("/tmp/resnetlab-pwned")


def test_a_model_folder_loads_through_every_route(run, tmp_path, capsys):
    folder = tmp_path / "r8-folder"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--format", "folder", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "cifar_resnet8" and config["library_name"] == "resnetlab"
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    original = _logits(resnetlab.load(run / "last.pt"), x)
    assert torch.equal(_logits(resnetlab.load(folder), x), original)
    assert torch.equal(create_model("cifar_resnet8", weights=str(folder)).eval()(x), original)
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 10)).save(tmp_path / "green.png")
    capsys.readouterr()
    assert main(["predict", "--weights", str(folder), str(tmp_path / "green.png"), "--json"]) == 0  # no --model
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] in resnetlab.load(folder).classes


def test_hf_hub_names_read_the_hub_cache_and_say_what_to_do_offline(run, tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--r8" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (cache / "models--someone--r8" / "refs").mkdir()
    (cache / "models--someone--r8" / "refs" / "main").write_text("0123abcd")
    resnetlab.export(snapshot, checkpoint=str(run / "last.pt"), format="folder")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(_logits(resnetlab.load("hf-hub:someone/r8"), x), _logits(resnetlab.load(run / "last.pt"), x))
    assert create_model("cifar_resnet8", weights="hf-hub:someone/r8").fc.out_features == 10
    with pytest.raises(resnetlab.UserError, match="not in the Hugging Face cache .* put its config.json and model"):
        resnetlab.load("hf-hub:someone/missing")
