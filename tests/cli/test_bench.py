import json

import pytest

from resnetlab.cli.main import main


@pytest.mark.parametrize("extra", [["--what", "pipeline"], ["--what", "train", "--model", "cifar_resnet8"],
                                   ["--what", "train", "--model", "cifar_resnet8", "--seeds", "2"]])
def test_bench_prints_both_rates_and_saves_them(extra, tiny_cifar, tmp_path, capsys):
    assert main(["bench", *extra, "--data", str(tiny_cifar), "--steps", "2", "--workers", "0", "--device", "cpu",
                 "--save", str(tmp_path)]) == 0
    assert "ratio" in capsys.readouterr().out
    (saved,) = tmp_path.glob("*.jsonl")
    r = json.loads(saved.read_text().splitlines()[-1])
    assert r["resnetlab_images_per_s"] > 0 and r["baseline_images_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["resnetlab_images_per_s"] / r["baseline_images_per_s"])
    assert r["torch"] and r["device_name"] and r["date"]
