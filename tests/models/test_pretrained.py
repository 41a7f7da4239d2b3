"""Named weights: looked up in a local folder, checked by sha256 always, downloaded only when missing,
and a clear message offline."""

import hashlib
import json
import shutil

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.errors import UserError
from resnetlab.models import create_model, pretrained, weights_fetch
from tests.conftest import AKAMASTER, CIFAR_JPEG

R20 = AKAMASTER / "resnet20-12fca82f.th"


@pytest.fixture()
def offline(monkeypatch):
    """Every registered URL points at a closed local port: no test ever reaches the network."""
    for key, w in list(pretrained.REGISTRY.items()):
        monkeypatch.setitem(pretrained.REGISTRY, key, pretrained.Weights(**{
            **w.__dict__, "url": f"http://127.0.0.1:9/{w.filename}"}))


def test_offline_the_error_says_which_file_to_put_where(offline, tmp_path):
    with pytest.raises(UserError, match=rf"Put the file at {tmp_path}/resnet56-4bfd9763.th \(SHA256 4bfd9763"):
        create_model("cifar_resnet56", weights="akamaster", weights_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())  # no half file


def test_a_file_with_another_sha256_is_refused(offline, tmp_path):
    (tmp_path / "resnet20-12fca82f.th").write_bytes(b"not the weights")
    with pytest.raises(UserError, match="does not have the sha256 of cifar_resnet20's akamaster weights"):
        create_model("cifar_resnet20", weights="akamaster", weights_dir=str(tmp_path))


def test_unknown_weights_name_lists_the_known_ones():
    with pytest.raises(UserError, match=r"no weights named 'imagenet' for cifar_resnet20 \(known: akamaster, resnetlab, resnetlab-45k, resnetlab-modern\)"):
        create_model("cifar_resnet20", weights="imagenet")


def test_download_checks_the_sha256_prefix_of_the_published_name(monkeypatch, tmp_path):
    if not R20.is_file():
        pytest.skip("the shared akamaster weights are not here")
    w = pretrained.REGISTRY[("cifar_resnet32", "akamaster")]
    fake = tmp_path / "src" / w.filename
    fake.parent.mkdir()
    fake.write_bytes(b"some other file")
    monkeypatch.setitem(pretrained.REGISTRY, ("cifar_resnet32", "akamaster"),
                        pretrained.Weights(**{**w.__dict__, "url": fake.as_uri()}))
    with pytest.raises(UserError, match="downloaded with the wrong SHA256"):
        create_model("cifar_resnet32", weights="akamaster", weights_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / w.filename).exists()
    good = tmp_path / "src2" / "resnet20-12fca82f.th"
    good.parent.mkdir()
    shutil.copy(R20, good)
    w20 = pretrained.REGISTRY[("cifar_resnet20", "akamaster")]
    monkeypatch.setitem(pretrained.REGISTRY, ("cifar_resnet20", "akamaster"),
                        pretrained.Weights(**{**w20.__dict__, "url": good.as_uri()}))
    model = create_model("cifar_resnet20", weights="akamaster", weights_dir=str(tmp_path / "cache"))
    assert hashlib.sha256((tmp_path / "cache" / good.name).read_bytes()).hexdigest() == w20.sha256
    assert model.fc.out_features == 10


def test_named_weights_carry_their_class_names_into_predict_and_evaluate(offline, tmp_path, capsys):
    if not R20.is_file() or not CIFAR_JPEG.is_dir():
        pytest.skip("the shared akamaster weights or images are not here")
    shutil.copy(R20, tmp_path / R20.name)
    cats = sorted((CIFAR_JPEG / "train" / "cat").iterdir())[:40]
    assert main(["predict", "--model", "cifar_resnet20", "--weights", "akamaster", "--weights-dir", str(tmp_path),
                 "--topk", "1", "--json", *map(str, cats)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert all(r["top"][0]["class"] in pretrained.CIFAR10_CLASSES for r in results)
    assert sum(r["top"][0]["class"] == "cat" for r in results) >= 20  # most cats are called cats, by name


def test_models_lists_the_named_weights_with_their_metadata(capsys):
    assert main(["models", "--weights", "--json"]) == 0
    rows = {(r["model"], r["weights"]): r for r in json.loads(capsys.readouterr().out)}
    r20 = rows[("cifar_resnet20", "akamaster")]
    assert r20["top1_error"] == 0.0827 and r20["license"] == "BSD-2-Clause" and r20["params"] == 269722
    assert r20["sha256"].startswith("12fca82f") and r20["normalization"] == "imagenet"
    tv = rows[("resnet50", "torchvision")]
    assert tv["classes"] == 1000 and tv["params"] == 25557032 and tv["url"].endswith("resnet50-0676ba61.pth")
    assert abs(tv["macs"] / 1e9 - 4.09) < 0.05  # torchvision's v1.5


def test_an_entry_known_by_its_8_hex_prefix_is_pinned_by_its_whole_sha256_on_first_use(monkeypatch, tmp_path):
    """Issue 18: 32 bits can be forged. A file matching the published prefix is pinned whole the first time;
    another file with the same prefix is refused afterwards."""
    import hashlib
    import json

    from resnetlab.models.weights_fetch import check_digest

    real, forged = b"the publisher's weights", b"a forgery with the same prefix"
    prefix = hashlib.sha256(real).hexdigest()[:8]
    w = pretrained.Weights("cifar_resnet32", "test", f"https://example.org/resnet32-{prefix}.th", prefix, "s", "l", "d", {})
    path = tmp_path / w.filename
    path.write_bytes(real)
    check_digest(w, path)
    pins = json.loads((tmp_path / "sha256-pins.json").read_text())
    assert pins == {w.filename: hashlib.sha256(real).hexdigest()}
    check_digest(w, path)  # the same file again: fine
    path.write_bytes(forged)
    monkeypatch.setattr("resnetlab.data.download.file_digest", lambda p, a="md5": prefix + "0" * 56)
    with pytest.raises(UserError, match="not the file first verified here"):
        check_digest(w, path)


def test_resnetlabs_own_weights_ship_in_the_package_with_their_normalization(tiny_cifar, tmp_path, monkeypatch, capsys):
    """Issue 17, item 3: a run's weights exported (no optimizer), shipped in the package, named `resnetlab`,
    loaded by create_model, --weights resnetlab and torch.hub, with the run's own per-pixel mean."""
    import hashlib

    import resnetlab
    from resnetlab.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(run), "--iters", "4",
                 "--batch-size", "32", "--workers", "0", "--amp", "off"]) == 0
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    out = bundled / "cifar_resnet8-resnetlab.pt"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--format", "weights", "--out", str(out)]) == 0
    assert "sha256" in capsys.readouterr().out and out.stat().st_size < (run / "last.pt").stat().st_size
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    monkeypatch.setattr(weights_fetch, "BUNDLED", bundled)
    monkeypatch.setitem(pretrained.REGISTRY, ("cifar_resnet8", "resnetlab"),
                        pretrained._resnetlab("cifar_resnet8", out.name, digest, 0.5, "4 iterations"))
    trained = resnetlab.load(run / "last.pt")
    x = torch.randn(3, 3, 32, 32)
    net = resnetlab.create_model("cifar_resnet8", weights="resnetlab").eval()
    torch.testing.assert_close(net(x), trained.model(x), rtol=0, atol=0)
    shipped = resnetlab.load(model="cifar_resnet8", weights="resnetlab")
    assert shipped.normalization.kind == "pixel-mean" and shipped.classes == trained.classes
    assert torch.equal(shipped.normalization.mean, trained.normalization.mean)
    as_file = resnetlab.load(model="cifar_resnet8", weights=str(out))  # the shipped file named by its path
    assert as_file.normalization.kind == "pixel-mean" and as_file.classes == trained.classes
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    w = resnetlab.get_weights("cifar_resnet8", "resnetlab")
    assert torch.equal(w.transforms()(image), trained.transforms()(image))
    top = resnetlab.predict([image], model="cifar_resnet8", weights="resnetlab", topk=1)
    assert top[0]["top"][0]["class"] in trained.classes
    out.write_bytes(out.read_bytes()[:-1] + b"x")  # damaged: refused by its whole sha256
    with pytest.raises(UserError, match="does not have the sha256"):
        resnetlab.create_model("cifar_resnet8", weights="resnetlab")
    out.unlink()
    with pytest.raises(UserError, match="should ship with resnetlab"):
        resnetlab.create_model("cifar_resnet8", weights="resnetlab")
