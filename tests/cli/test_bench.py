import json

import numpy as np
import pytest

from resnetlab.cli.main import main


def benchmark_script(name: str):
    """benchmarks/NAME.py imported as a module (the folder is scripts, not a package)."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    mod = benchmark_script("pack_images")
    src = tmp_path / "src"
    for i, name in enumerate(["a/0.jpg", "a/1.jpg", "b/0.png"]):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(bytes([i]) * (10 + i))
    mod.pack(src, tmp_path / "p.npz")
    mod.unpack(tmp_path / "p.npz", tmp_path / "dst")
    for name in ["a/0.jpg", "a/1.jpg", "b/0.png"]:
        assert (tmp_path / "dst" / name).read_bytes() == (src / name).read_bytes()


def test_roofline_counts_flops_measures_the_peak_and_keeps_a_table_per_cpu_class(tmp_path, capsys):
    """The fraction is the measured step's GFLOP/s over the measured peak of its precision, the FLOPs are
    counted (a deeper net has more per step), and --save keeps one record and one table row per CPU class."""
    from resnetlab.bench import report
    from resnetlab.runtime.devices import cpu_isa

    folder = tmp_path / "results"
    folder.mkdir()
    # another class than any machine's (an AVX2 one's own file would get this run's record appended)
    (folder / "roofline-SSE4.jsonl").write_text('not json\n{"isa": "SSE4", "device_name": "Old Opteron (CPU, SSE4)", '
                                                '"threads": 2, "torch": "2.x", "date": "d", "peaks": {"fp32": '
                                                '{"matmul": 110.0, "conv": 90.0, "peak": 110.0}}, "steps": []}\n')
    assert main(["bench", "--what", "roofline", "--model", "cifar_resnet8,cifar_resnet14", "--no-trainer",
                 "--min-seconds", "0.2", "--device", "cpu", "--save", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "of the" in out and "peak" in out
    (record,) = [json.loads(line) for line in report.record_path(folder, cpu_isa()).read_text().splitlines()]
    assert record["isa"] == cpu_isa() and cpu_isa() in record["device_name"]
    by_model = {}
    for row in record["steps"]:
        peak = record["peaks"][row["precision"]]["peak"]
        assert row["fraction_of_peak"] == pytest.approx(row["gflops"] / peak)
        assert row["gflops"] == pytest.approx(row["gflop_per_step"] * row["images_per_s"] / 128)
        by_model[row["model"]] = row["gflop_per_step"]
    # FLOPs counted, not assumed: in units of one full 3x3 layer (every stage's cost the same, a stride-2 one
    # half), ResNet-14's residual path holds 11 against ResNet-8's 5, the stem and classifier a little more
    assert 2.1 < by_model["cifar_resnet14"] / by_model["cifar_resnet8"] < 2.3
    for p in record["peaks"].values():  # the memory ceiling, measured in the same run
        assert 0 < p["copy"] <= p["bandwidth"] and 0 < p["triad"] <= p["bandwidth"]
    for row in record["steps"]:
        # the whole step's bound max(FLOPs/peak, bytes/bandwidth) never exceeds the sum of each kind's own bound
        assert 0 < row["bound_seconds"] <= row["bound_seconds_per_kind"] * (1 + 1e-9)
        assert row["fraction_of_bound"] == pytest.approx(row["bound_seconds_per_kind"] * row["images_per_s"] / 128)
        assert row["kinds"]["batch norm"]["bound_by"] == "memory" and row["kinds"]["convolution"]["gflop"] > 0
    assert "MB/step" in (folder / "roofline.md").read_text()
    shares = next(r["time_shares"] for r in record["steps"] if "time_shares" in r)
    assert sum(shares.values()) == pytest.approx(1.0) and shares["convolution"] > 0
    table = (folder / "roofline.md").read_text()
    assert "## SSE4: Old Opteron" in table and f"## {cpu_isa()}:" in table and "cifar_resnet14" in table


def test_the_bytes_of_a_step_are_counted_per_op():
    """Each op reads its inputs and writes its outputs once; views move nothing; under CPU autocast BatchNorm and
    ReLU run in bf16 (2 bytes an element), the convolutions' outputs too: what fusing them could save."""
    import torch
    from torch import nn

    from resnetlab.bench.traffic import OpTraffic, count_step

    x = torch.randn(1000)
    with OpTraffic() as t:
        y = x.relu()
        x.view(10, 100)
        y.add_(x)
    assert t.ops["relu"] == [4000, 4000] and t.ops["add_.Tensor"] == [8000, 4000] and "view" not in t.ops
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    images = torch.randn(4, 3, 16, 16)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net(images).float().sum().backward()

    with OpTraffic() as t:
        step()
    out = 4 * 8 * 16 * 16
    assert t.ops["native_batch_norm"][1] >= 2 * out and t.ops["relu"] == [2 * out, 2 * out]
    counted = count_step(step)
    assert counted["kinds"]["convolution"]["flops"] > 0 and counted["kinds"]["batch norm"]["flops"] == 0
    assert counted["bytes"] == sum(k["bytes"] for k in counted["kinds"].values())


FAKE_TIMM = '''import sys, time
argv = sys.argv[1:]
open(__file__[:-3] + ".argv", "w").write(" ".join(argv))
for epoch in range(int(argv[argv.index("--epochs") + 1])):
    for b in range(0, 12, 2):
        time.sleep(0.05)
        print(f"Train: {epoch} [{b:>4d}/12 ( 50%)]  Loss: 2.30 (2.30)  Time: 0.05s", flush=True)
'''


def test_the_folder_bench_reads_each_trainers_progress_lines():
    from resnetlab.bench.folders import Timed, iterations_done

    assert iterations_done("iter     40/60 lr 0.0025 | train loss 2.1", "resnetlab") == 40
    assert iterations_done("Train: 2 [  10/20 ( 55%)]  Loss: 2.14 (2.19)", "timm") == 2 * 20 + 11
    assert iterations_done("Train: 2 [  10/20 ( 55%)]", "resnetlab") is None and iterations_done("iter 5/9", "timm") is None
    timed = Timed("timm", points=[(1.0, 10), (2.0, 20), (4.0, 40)])
    assert timed.images_per_s(batch_size=8, warmup=20) == pytest.approx(20 * 8 / 2.0)
    assert Timed("x", points=[(1.0, 25)]).images_per_s(8, 20) is None  # one line past the warm-up: no rate


def test_bench_folders_times_resnetlab_train_beside_timms_train_py(tmp_path, capsys):
    from tests.training.test_imagenet_folders import imagenet_folders

    data = imagenet_folders(tmp_path / "ds", train=6, val=1)
    timm = tmp_path / "train.py"
    timm.write_text(FAKE_TIMM)
    assert main(["bench", "--what", "folders", "--data", str(data), "--timm-train", str(timm), "--fast", "off",
                 "--steps", "4", "--batch-size", "4", "--img-size", "32", "--workers", "0",
                 "--save", str(tmp_path / "saved")]) == 0
    out = capsys.readouterr().out
    assert "resnetlab: " in out and "x timm's train.py" in out and "resnetlab-compiled" not in out
    r = json.loads(next((tmp_path / "saved").glob("*.jsonl")).read_text().splitlines()[-1])
    assert r["what"] == "folders" and set(r["folder_images_per_s"]) == {"resnetlab", "timm"}
    assert r["ratio_to_timm"]["resnetlab"] == pytest.approx(r["folder_images_per_s"]["resnetlab"] / r["folder_images_per_s"]["timm"])
    assert 120 < r["folder_images_per_s"]["timm"] < 165  # the fake: a line per 2 batches of 4 and 0.05 s, 160/s
    # timm was given the same model, batch, size, workers and precision, the folder's train/ split
    argv = (tmp_path / "train.argv").read_text().split()
    for flag, value in [("--model", "resnet18"), ("-b", "4"), ("--img-size", "32"), ("--workers", "0"),
                        ("--train-split", "train")]:
        assert argv[argv.index(flag) + 1] == value
    assert "--channels-last" in argv


def test_bench_folders_names_a_missing_timm_script(tmp_path, capsys):
    assert main(["bench", "--what", "folders", "--data", str(tmp_path), "--timm-train", str(tmp_path / "nope.py")]) == 2
    assert f"--timm-train {tmp_path / 'nope.py'} is not a file" in capsys.readouterr().err


def test_step_variants_patch_inductor_for_their_duration_and_pass_options_on():
    import torch._inductor.config as inductor_config

    mod = benchmark_script("step_variants")
    before = inductor_config.cpp_wrapper
    with mod.variant(f"baseline+channels_last=off+inductor:cpp_wrapper={not before}") as changes:
        assert changes == {"channels_last": "off"}
        assert inductor_config.cpp_wrapper is (not before)
    assert inductor_config.cpp_wrapper is before


def test_conv_backward_alternatives_compute_onednns_weight_gradient():
    import torch

    mod = benchmark_script("conv_backward")
    g = torch.Generator().manual_seed(0)
    x, go = (torch.randn(4, 8, 6, 6, generator=g).to(memory_format=torch.channels_last) for _ in range(2))
    w = torch.randn(8, 8, 3, 3, generator=g)
    reference = mod.backward(go, x, w, [False, True, False])[1]
    for way in (mod.weight_grad_unfold, mod.weight_grad_patches):
        assert torch.allclose(way(go.contiguous(), x.contiguous(), w), reference, atol=1e-4)


def test_make_folder_writes_class_folders_of_jpegs_at_the_size_asked(tmp_path):
    from PIL import Image

    mod = benchmark_script("make_folder")
    src = tmp_path / "src"
    for c in ("cat", "dog"):
        (src / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(src / c / f"{i}.png")
    assert mod.parse_size("2000x1500") == (2000, 1500) and mod.parse_size("256") == (256, 256)
    assert mod.make(src, tmp_path / "out", (96, 64), per_class=2) == 4
    made = sorted((tmp_path / "out").rglob("*.jpg"))
    names = [p.relative_to(tmp_path / "out").as_posix() for p in made]
    assert names == ["cat/0.jpg", "cat/1.jpg", "dog/0.jpg", "dog/1.jpg"]
    with Image.open(made[0]) as img:
        assert img.format == "JPEG" and img.size == (96, 64)
        assert len(np.unique(np.asarray(img.convert("L")))) > 5  # the grain: not one flat colour
