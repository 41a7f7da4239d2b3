"""Per-image augmentation policies, torchvision's v2 transforms by name (`--auto-augment`), and random erasing
(`--random-erase P`), for both pipelines: the in-memory one's uint8 batches on the device (data/device_loader.py)
and the streamed one's decoded photos (data/imagenet.py). A new policy is one POLICIES line.

torchvision's policies draw from torch's global generator; each image's draws are made under that generator
seeded by the image's own (seed, epoch, index) and restored afterwards (fork_rng), so a resumed run, any number
of workers and any rank draw the same, and nothing else's randomness moves. The three policies run
batched on a batch (data/batched_policy.py: the same draws and pixels, 2-5x faster).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from resnetlab.data.batched_policy import as_compared, batched
from resnetlab.data.seed_sequences import seeds_u64

# Each builds the policy; `small`: the images are CIFAR-sized (AutoAugment has a policy searched on CIFAR-10).
POLICIES: dict[str, Callable[[bool], Callable[[Tensor], Tensor]]] = {
    "trivialaugmentwide": lambda small: v2.TrivialAugmentWide(),  # torchvision's V2 recipe's (Mueller & Hutter 2021)
    "randaugment": lambda small: v2.RandAugment(),  # Cubuk et al. 2020: 2 ops of magnitude 9
    "autoaugment": lambda small: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10 if small else v2.AutoAugmentPolicy.IMAGENET),
}
POLICY_STREAM, ERASE_STREAM = 0xA0A0, 0xE5E5  # apart from the crop's and flip's draws of the same image


def image_seeds(seed: int, epoch: int, indices: Tensor, stream: int) -> list[int]:
    """One seed per image, a function of (seed, epoch, image index, stream) alone: numpy's
    SeedSequence([seed, epoch, index, stream]).generate_state(1, np.uint64)[0] >> 1, for the batch at once."""
    return (seeds_u64([seed, epoch], indices.cpu().numpy(), [stream]) >> np.uint64(1)).tolist()


def _each_seeded(fn: Callable[[Tensor], Any], images: Iterable[Tensor], seeds: list[int]) -> list[Any]:
    """fn(image) for each image, torch's CPU generator seeded by that image's seed; its state restored once, after."""
    out = []
    with torch.random.fork_rng(devices=[]):
        # The CPU generator alone, which torchvision draws its parameters from: torch.manual_seed would also seed
        # every accelerator's (unrestored by fork_rng(devices=[])) and costs 77 us against 1 here, which at two
        # draws an image was 20 ms of a ResNet-20 step's 300 (batch 128, one AMX core).
        for image, seed in zip(images, seeds):
            torch.default_generator.manual_seed(seed)
            out.append(fn(image))
    return out


def _box_mask(boxes: list[tuple[int, int, int, int] | None], like: Tensor) -> Tensor:
    """(N, 1, H, W) True inside each image's box (top, left, height, width); all False where it has none."""
    box = torch.tensor([b or (0, 0, 0, 0) for b in boxes], device=like.device).view(-1, 4, 1)
    rows, cols = (torch.arange(n, device=like.device) for n in like.shape[-2:])
    in_rows = (rows >= box[:, 0]) & (rows < box[:, 0] + box[:, 2])
    in_cols = (cols >= box[:, 1]) & (cols < box[:, 1] + box[:, 3])
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


class ImageAugment:
    """The policy (on uint8 images, before normalization) and random erasing (on the normalized input: erased
    pixels become 0, the mean, as in torchvision's references) a run's settings ask for."""

    def __init__(self, policy: str = "", erase: float = 0.0, small: bool = False) -> None:
        self.policy = POLICIES[policy](small) if policy else None
        self.batched = batched(self.policy)  # the same draws and pixels, a whole batch at once (None: per image)
        self.erase = v2.RandomErasing(p=erase, value=0) if erase else None
        self.erase_p = as_compared(erase)  # the draw read as a number: 7 us against 25 per image
        self.name = " + ".join(filter(None, [policy, f"random erasing p={erase:g}" if erase else ""]))

    def __bool__(self) -> bool:
        return self.policy is not None or self.erase is not None

    def apply_policy(self, images: Tensor, seeds: list[int]) -> Tensor:
        """uint8 (N, C, H, W) or (C, H, W) -> the same, each image under its own seed."""
        if self.policy is None:
            return images
        if images.dim() == 3:
            return _each_seeded(self.policy, [images], seeds[:1])[0]
        if self.batched is not None:
            return self.batched(images, seeds)
        return torch.stack(_each_seeded(self.policy, images, seeds))

    def apply_erase(self, x: Tensor, seeds: list[int]) -> Tensor:
        """Normalized float (N, C, H, W) or (C, H, W) -> the same, each image under its own seed: torchvision's
        draws per image, the boxes erased in one op (per-image calls were as slow as the whole batched policy)."""
        if self.erase is None:
            return x
        if x.dim() == 3:
            return self.apply_erase(x.unsqueeze(0), seeds[:1])[0]
        return x.masked_fill(_box_mask(_each_seeded(self._erase_box, x, seeds), x), self.erase.value[0])

    def _erase_box(self, image: Tensor) -> tuple[int, int, int, int] | None:
        """What v2.RandomErasing draws for one image, in its order: whether to erase, then the box."""
        if torch.rand(1).item() >= self.erase_p:
            return None
        box = self.erase.make_params([image])
        return None if box["v"] is None else (box["i"], box["j"], box["h"], box["w"])

    def one_image(self, img: Tensor, g: torch.Generator, finish: Callable[[Tensor], Tensor]) -> Tensor:
        """A streamed photo's uint8 crop through the policy, `finish` (to float, normalized), random erasing;
        the seeds drawn from the image's own generator `g`."""
        policy_seed, erase_seed = (int(s) for s in torch.randint(0, 2**62, (2,), generator=g))
        return self.apply_erase(finish(self.apply_policy(img, [policy_seed])), [erase_seed])
