"""The size a run feeds its network (--img-size), one rule for every network and every dataset.

Default: the network's own input. The CIFAR nets take 32x32 whatever the photos' size (their three stages
were designed for 32-px maps: at 224 px each image costs 49x the compute for no accuracy the recipe was made
for). The ImageNet nets take 224 on folders of photos (Sec. 3.4's crop); data that comes at 32 px (CIFAR) is
taken as it is, as torchvision and timm do, since upscaling 32-px images 7x in every dimension costs 49x the
compute. Up to 64 px the images are decoded once into memory at that size (photos resized and centre-cropped)
and augmented there; larger ones are streamed and cropped from the resized photo.
"""

from __future__ import annotations

from resnetlab.data.sources import SMALL_IMAGE
from resnetlab.errors import UserError
from resnetlab.models.registry import is_cifar

MAX_IMG_SIZE = 1024  # 4.7x Sec. 3.4's largest test side (640 upscaled 1.6x): beyond it, a typo
# An ImageNet net downsamples by 32: below 112 px layer4 sees at most a 3x3 map, far from what it was made for.
SMALL_FOR_IMAGENET = 112


def wanted_size(model: str, requested: int) -> int | None:
    """The size to open the data at: --img-size when given, 32 for the CIFAR nets, None (224 on photo folders,
    small images as they are) for the ImageNet nets."""
    if requested:
        if not 8 <= requested <= MAX_IMG_SIZE:
            raise UserError(f"--img-size {requested}: give a side in pixels from 8 to {MAX_IMG_SIZE} (0: the "
                            "network's own input, 32 for the CIFAR nets, 224 for the ImageNet nets)")
        return requested
    return 32 if is_cifar(model) else None


def stream_input(size: int | None) -> dict[str, int]:
    """The crop and the shorter side it is cut from, for streamed images: 224 from 256 (Sec. 3.4's test
    resize), other sizes in the same proportion."""
    crop = size or 224
    return {"size": crop, "resize": round(crop * 256 / 224)}


def size_warning(model: str, size: int) -> str | None:
    """A warning naming --img-size when the size is far from what the network was made for."""
    if is_cifar(model) and size > SMALL_IMAGE:
        return (f"warning: {model} is a CIFAR net made for 32x32 input and is fed {size}x{size} "
                f"({(size / 32) ** 2:.0f}x the compute per image); --img-size 32 gives it its own")
    if not is_cifar(model) and size < SMALL_FOR_IMAGENET:
        return (f"warning: {model} is an ImageNet net made for 224x224 input and is fed {size}x{size}: its last "
                f"stage sees a {max(1, size // 32)}x{max(1, size // 32)} map; --img-size 224 upscales a folder's "
                "images (slower), or a CIFAR net (cifar_resnet20, ...) takes small images as they are")
    return None
