"""Weight averagers (issue 42): the EMA's rule."""

import torch

from resnetlab.models import create_model
from resnetlab.training.averagers import ModelEMA


def test_the_ema_moves_toward_the_weights_every_n_steps_and_averages_batchnorm_statistics_too():
    net = create_model("cifar_resnet8")
    ema = ModelEMA(net, decay=0.9, every=2)
    start = {k: v.clone() for k, v in ema.average.items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net.bn1.running_mean.add_(1.0)
    ema.after_step(1)  # not a multiple of 2: nothing
    assert all(torch.equal(ema.average[k], start[k]) for k in start)
    ema.after_step(2)
    assert torch.allclose(ema.average["conv1.weight"], start["conv1.weight"] + 0.1)
    assert torch.allclose(ema.average["bn1.running_mean"], start["bn1.running_mean"] + 0.1)
    assert "bn1.num_batches_tracked" not in ema.average  # integers are not averaged
