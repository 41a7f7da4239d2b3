"""Issue 19, items 5, 7, 9, 10: the weights API of torchvision, `resnetlab.load`, predict on any kind of image,
typed evaluate keywords, traceable prediction rows."""

import csv
import shutil

import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.cli.main import main
from tests.conftest import AKAMASTER

R20 = AKAMASTER / "resnet20-12fca82f.th"
needs_r20 = pytest.mark.skipif(not R20.is_file(), reason="the shared akamaster weights are not here")


def test_get_weights_has_torchvisions_meta_and_transforms():
    from torchvision.models import ResNet50_Weights

    w = resnetlab.get_weights("resnet50", "IMAGENET1K_V2")
    tv = ResNet50_Weights.IMAGENET1K_V2
    assert w.url == tv.url and w.meta["categories"] == tv.meta["categories"] and w.meta["input"]["resize"] == 232
    image = Image.fromarray(torch.randint(0, 256, (300, 400, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy())
    ours, theirs = w.transforms()(image), tv.transforms()(image)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert (ours - theirs).abs().mean() < 0.02  # PIL's and torch's antialiased resize differ by a grey level here and there
    assert resnetlab.get_weights("resnet50").name == "torchvision-v2"  # DEFAULT: the best published
    with pytest.raises(resnetlab.UserError, match="unknown model"):
        resnetlab.get_weights("resnet51")


@needs_r20
def test_load_and_predict_take_files_folders_pil_images_and_tensors(tmp_path):
    weights_dir = tmp_path / "w"
    weights_dir.mkdir()
    shutil.copy(R20, weights_dir / R20.name)
    loaded = resnetlab.load(model="cifar_resnet20", weights="akamaster", weights_dir=weights_dir)
    assert loaded.classes[0] == "airplane" and not loaded.model.training
    g = torch.Generator().manual_seed(1)
    pixels = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(5)]
    folder = tmp_path / "photos" / "inner"
    folder.mkdir(parents=True)
    for i, p in enumerate(pixels):
        Image.fromarray(p.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    expected = loaded.model(torch.stack([loaded.transforms()(p) for p in pixels])).softmax(1).argmax(1).tolist()
    common = {"model": "cifar_resnet20", "weights": "akamaster", "weights_dir": weights_dir, "topk": 1}
    by_folder = resnetlab.predict([tmp_path / "photos"], batch_size=2, **common)  # 3 batches
    assert [r["file"] for r in by_folder] == [str(folder / f"{i}.png") for i in range(5)]
    assert [r["top"][0]["index"] for r in by_folder] == expected
    by_pil = resnetlab.predict([Image.open(folder / f"{i}.png") for i in range(5)], **common)
    by_uint8 = resnetlab.predict(torch.stack(pixels), **common)
    by_float = resnetlab.predict([p.float() / 255 for p in pixels], **common)
    for rows in (by_pil, by_uint8, by_float):
        assert [r["top"][0]["index"] for r in rows] == expected and rows[0]["file"] is None
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):  # a normalized tensor would be silently wrong
        resnetlab.predict([torch.randn(3, 32, 32)], **common)
    with pytest.raises(TypeError, match="PIL image"):
        resnetlab.predict([3], **common)
    with pytest.raises(ValueError, match="longer than 20:1"):  # 2 x 60000: gigabytes once resized
        resnetlab.predict([Image.new("RGB", (60000, 2))], **common)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(resnetlab.UserError, match="holds no images"):
        resnetlab.predict([empty], **common)


@needs_r20
def test_predict_command_takes_a_folder(tmp_path, capsys):
    for name in ("a", "b/c"):
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (20, 200, 20)).save(tmp_path / "imgs" / f"{name}.png")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    assert main(["predict", "--model", "cifar_resnet20", "--weights", str(R20), str(tmp_path / "imgs"),
                 "--batch-size", "1", "--topk", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "imgs" / "a.png"), str(tmp_path / "imgs" / "b" / "c.png")]


def test_evaluate_takes_typed_keywords_and_names_each_prediction(tiny_cifar, tmp_path):
    out = tmp_path / "r"
    resnetlab.train(model="cifar_resnet8", data=tiny_cifar, out=out, iters=2, batch_size=32, eval_every=2,
                    log_every=2, amp="off")
    result = resnetlab.evaluate(checkpoint=out / "last.pt", data=tiny_cifar, split="holdout", plot=None,
                                save_predictions=tmp_path / "p.csv", topk=2)
    assert result["count"] > 0 and not list(tmp_path.glob("None*"))
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == result["count"]
    train = resnetlab.evaluate(checkpoint=out / "last.pt", data=tiny_cifar, split="train",
                               save_predictions=tmp_path / "t.csv", topk=2)
    by_item = {r["item"]: r for r in csv.DictReader(open(tmp_path / "t.csv"))}
    assert train["count"] == 600 and all(r["item"].startswith("train[") for r in rows)
    for r in rows:  # each hold-out image is found in train, with the same label and prediction
        assert by_item[r["item"]]["true_class"] == r["true_class"] and by_item[r["item"]]["class_1"] == r["class_1"]
    with pytest.raises(TypeError, match="unknown option 'json'.*known: checkpoint, data"):
        resnetlab.evaluate(data=tiny_cifar, checkpoint=out / "last.pt", json=True)
    with pytest.raises(ValueError, match="split must be one of"):
        resnetlab.evaluate(data=tiny_cifar, checkpoint=out / "last.pt", split="hold-out")
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        resnetlab.evaluate(data=tiny_cifar, checkpoint=out / "last.pt", batch_size=0)
