"""The batched SeedSequence against numpy's own, word for word."""

import numpy as np
import pytest
import torch

from resnetlab.data.image_policies import image_seeds
from resnetlab.data.seed_sequences import seeds_u64


def numpy_seed(words: list[int]) -> int:
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


@pytest.mark.parametrize("before,after", [([0, 0], [0xA0A0]), ([3, 17], [0xE5E5]), ([2**40 + 5, 2**32], [7]),
                                          ([], []), ([1, 2, 3, 4, 5], [2**64 - 1])])
def test_each_seed_is_numpys(before, after):
    rng = np.random.default_rng(0)
    varying = np.concatenate([[0, 1, 2**32 - 1], rng.integers(0, 2**32, 200)])
    ours = seeds_u64(before, varying, after)
    assert ours.dtype == np.uint64
    assert [int(v) for v in ours] == [numpy_seed([*before, int(v), *after]) for v in varying]


def test_image_seeds_are_the_per_image_ones_and_refuse_what_numpy_would_split():
    indices = torch.tensor([0, 5, 49_999, 12])
    assert image_seeds(3, 9, indices, 0xA0A0) == [numpy_seed([3, 9, i, 0xA0A0]) >> 1 for i in indices.tolist()]
    assert image_seeds(0, 0, torch.tensor([], dtype=torch.long), 1) == []
    with pytest.raises(ValueError):
        seeds_u64([0], np.array([2**32]), [])  # two words: a longer entropy for that image alone
    with pytest.raises(ValueError):
        seeds_u64([-1], np.array([0]), [])
