"""The image-folder stream: one DataLoader across epochs gives exactly the batches a restart at any step gives."""

import torch

from resnetlab.data.folders import scan
from resnetlab.data.imagenet import StreamLoader
from tests.training.test_imagenet_folders import imagenet_folders


def loader(index, rank=0, world_size=1):
    return StreamLoader(index, 4, torch.device("cpu"), seed=3, workers=0, rank=rank, world_size=world_size, crop=32)


def test_the_stream_crosses_epochs_as_restarts_at_every_step_would(tmp_path):
    index = scan(imagenet_folders(tmp_path / "ds", train=5, val=1) / "train")  # 10 images: 2 batches of 4 per epoch
    stream = loader(index)
    assert len(stream) == 2
    streamed = [stream.batch(step) for step in range(7)]  # three epochs and a half, never restarted
    for step in range(7):
        restarted = loader(index).batch(step)  # what a resumed run draws at this step
        assert torch.equal(streamed[step].images, restarted.images), step
        assert torch.equal(streamed[step].labels, restarted.labels), step
    epochs = [torch.cat([streamed[2 * e].labels, streamed[2 * e + 1].labels]) for e in range(3)]
    assert all(len(labels) == 8 for labels in epochs)  # 2 of 10 images left out of each epoch (drop_last)
    assert not all(torch.equal(epochs[0], other) for other in epochs[1:])  # each epoch its own permutation


def test_two_ranks_share_each_global_batch(tmp_path):
    index = scan(imagenet_folders(tmp_path / "ds", train=5, val=1) / "train")
    single, halves = loader(index), [loader(index, rank, 2) for rank in range(2)]
    for step in range(5):
        whole = single.batch(step).labels
        parts = [h.batch(step).labels for h in halves]
        assert sorted(torch.cat(parts).tolist()) == sorted(whole.tolist()) and all(len(p) == 2 for p in parts)


def test_a_photo_is_decoded_no_larger_than_its_own_scale_draw():
    """Sec. 3.4's scale jitter draws the shorter side first; the decode is told that side, and the draw is the one
    the transform then makes (the generator is left as it was)."""
    from resnetlab.data.imagenet import TrainTransform, sample_generator

    t = TrainTransform()
    for i in range(20):
        g = sample_generator(0, 0, i)
        before = g.get_state().clone()
        side = t.decode_side(g)
        assert torch.equal(g.get_state(), before) and 256 <= side <= 480
        assert t.draw_short(g) == side
