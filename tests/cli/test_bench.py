import json

import pytest

from resnetlab.cli.main import main


@pytest.mark.parametrize("extra", [["--what", "pipeline"], ["--what", "train", "--model", "cifar_resnet8"],
                                   ["--what", "train", "--model", "cifar_resnet8", "--seeds", "2", "--fast", "off"]])
def test_bench_prints_both_rates_and_saves_them(extra, tiny_cifar, tmp_path, capsys):
    assert main(["bench", *extra, "--data", str(tiny_cifar), "--steps", "2", "--workers", "0", "--device", "cpu",
                 "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out
    (saved,) = tmp_path.glob("*.jsonl")
    r = json.loads(saved.read_text().splitlines()[-1])
    assert r["resnetlab_images_per_s"] > 0 and r["baseline_images_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["resnetlab_images_per_s"] / r["baseline_images_per_s"])
    assert r["torch"] and r["device_name"] and r["date"]
    if "train" in extra:  # the chosen path, eager resnetlab and the baseline, measured in one run
        assert r["eager_images_per_s"] > 0 and "fast path:" in out and "resnetlab eager" in out
        assert (r["compile_seconds"] > 0) == ("compiled" in r["fast_path"])


def test_pack_images_round_trip(tmp_path):
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("pack_images", REPO / "benchmarks" / "pack_images.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = tmp_path / "src"
    for i, name in enumerate(["a/0.jpg", "a/1.jpg", "b/0.png"]):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(bytes([i]) * (10 + i))
    mod.pack(src, tmp_path / "p.npz")
    mod.unpack(tmp_path / "p.npz", tmp_path / "dst")
    for name in ["a/0.jpg", "a/1.jpg", "b/0.png"]:
        assert (tmp_path / "dst" / name).read_bytes() == (src / name).read_bytes()
