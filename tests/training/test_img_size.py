"""--img-size (issue 41.1): the size a network is fed is the user's to set, the network's own by default (32 for
the CIFAR nets whatever the photos' size, 224 for the ImageNet nets on photo folders), said at start-up and by
`data inspect`, with a warning when it is far from what the network was made for."""

import json

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.data import open_dataset

FAST = ["--iters", "4", "--batch-size", "16", "--eval-every", "4", "--log-every", "2", "--fast", "off",
        "--device", "cpu", "--workers", "0"]


def test_the_readme_fine_tune_of_a_cifar_net_on_larger_photos_trains_at_32(photos96, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "cifar_resnet20", "--weights", "resnetlab", "--data", str(photos96),
                 "--out", str(run), *FAST, "--amp", "off"]) == 0  # evaluate computes in fp32
    out = capsys.readouterr().out
    assert "input 32x32 (in memory" in out and "warning" not in out
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["input"] == {"size": 32, "resize": 32} and ckpt["normalization"]["mean"].shape == (3, 32, 32)
    # evaluate reads the folder as training did: the same validation loss
    final = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(photos96), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["loss"] == pytest.approx(final["val_loss"], rel=1e-4)


def test_img_size_sets_memory_or_streaming_and_warns_far_from_the_networks_own(photos96, tmp_path, capsys):
    cases = [(["--model", "resnet18", "--img-size", "64"], "input 64x64 (in memory", "fed 64x64"),
             (["--model", "resnet18", "--img-size", "96"], "input 96x96 (cropped from photos resized to 110 px",
              "fed 96x96"),
             (["--model", "cifar_resnet8", "--img-size", "96", "--normalization", "imagenet"],
              "input 96x96 (cropped", "--img-size 32 gives it its own")]
    for i, (args, line, warning) in enumerate(cases):
        run = tmp_path / f"r{i}"
        assert main(["train", "--data", str(photos96), "--out", str(run), *FAST, *args]) == 0, args
        out = capsys.readouterr().out
        assert line in out and warning in out and "--img-size" in out
        size = int(args[args.index("--img-size") + 1])
        assert torch.load(run / "last.pt", weights_only=True)["input"]["size"] == size


def test_bad_sizes_and_normalizations_are_refused_naming_the_option(photos96, tiny_cifar, tmp_path, capsys):
    for args, message in ((["--model", "resnet18", "--img-size", "4"], "--img-size 4: give a side"),
                          (["--model", "cifar_resnet8", "--img-size", "96"], "--normalization pixel-mean is computed"),
                          (["--model", "cifar_resnet8", "--img-size", "96", "--data", str(tiny_cifar)],
                           "come as arrays")):
        data = [] if "--data" in args else ["--data", str(photos96)]
        assert main(["train", *data, "--out", str(tmp_path / "x"), *FAST, *args]) == 2
        assert message in capsys.readouterr().err


def test_data_inspect_says_what_each_network_is_fed(photos96, tiny_cifar, capsys):
    assert main(["data", "inspect", str(photos96)]) == 0
    assert "CIFAR nets 32x32 (in memory), the ImageNet nets 224x224 (streamed); --img-size" in capsys.readouterr().out
    assert main(["data", "inspect", str(tiny_cifar), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == {"cifar_nets": 32, "imagenet_nets": 32}


def test_photos_fitted_into_memory_match_the_evaluation_crop(photos96):
    from resnetlab.data.folders import decode
    from resnetlab.data.imagenet import eval_transform
    fitted = open_dataset(photos96, size=32).splits["val"]
    assert fitted.images.shape == (16, 32, 32, 3)
    streamed = open_dataset(photos96).splits["val"]
    crop = eval_transform(32, 32, normalize=lambda x: x)  # what evaluating the folder at 32 px cuts from a file
    for i in (0, 7, 15):
        assert torch.equal(crop(decode(streamed.paths[i])).permute(1, 2, 0), torch.from_numpy(fitted.images[i]))
