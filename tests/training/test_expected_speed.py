"""The start-up time estimate: the figure measured for this class of CPU, before the run measures itself."""

import pytest
import torch

from resnetlab.cli.main import main
from resnetlab.models import count_macs, create_model
from resnetlab.training import expected_speed


def test_the_table_is_resnet20s_measured_figure_and_deeper_nets_are_scaled_by_multiply_adds():
    assert count_macs(create_model("cifar_resnet20"), 32) == expected_speed.RESNET20_MACS
    assert expected_speed.expected_images_per_s("cifar_resnet20", "AVX2", 2) == pytest.approx(249)
    r56 = expected_speed.expected_images_per_s("cifar_resnet56", "AVX-512 BF16", 2)
    assert 290 < r56 < 335  # measured 317-335 on that class: the scaling errs long
    assert expected_speed.expected_images_per_s("cifar_resnet20", "AMX", 1) == pytest.approx(650)
    assert expected_speed.expected_images_per_s("cifar_resnet20", "baseline", 2) is None
    assert expected_speed.expected_images_per_s("resnet50", "AMX", 2) is None
    assert expected_speed.expectation("cifar_resnet20", 100, 128, torch.device("meta")) is None  # not a CPU


@pytest.mark.parametrize("isa, said", [("AVX2", "about 249 images/s"), ("baseline", None)])
def test_train_says_the_expected_time_for_this_cpu_class_at_its_start(tiny_cifar, tmp_path, capsys, monkeypatch,
                                                                     isa, said):
    monkeypatch.setattr(expected_speed, "cpu_isa", lambda: isa)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert main(["train", "--model", "cifar_resnet20", "--data", str(tiny_cifar), "--out", str(tmp_path / "r"),
                 "--iters", "2", "--device", "cpu", "--fast", "off"]) == 0
    text = capsys.readouterr()
    lines = [line for line in (text.out + text.err).splitlines() if line.startswith("expected on this CPU")]
    if said is None:
        assert lines == []
    else:
        assert len(lines) == 1 and said in lines[0] and "(AVX2, 2 threads)" in lines[0]
        assert f"2 iterations take about {2 * 128 / 249:.0f} s" in lines[0]
