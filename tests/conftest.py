from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cifar_files import write_cifar10_python

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CIFAR_JPEG = SHARED / "data" / "cifar10-jpeg"
AKAMASTER = SHARED / "weights" / "akamaster-cifar"


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decode cache for the whole session, never the user's ~/.cache."""
    root = Path(os.environ.get("RESNETLAB_TEST_CACHE") or tmp_path_factory.mktemp("resnetlab-cache"))
    os.environ["RESNETLAB_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    if not CIFAR_JPEG.is_dir():
        pytest.skip(f"{CIFAR_JPEG} is not here")
    return CIFAR_JPEG


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CIFAR-10 python-format folder: 600 training and 200 test images of learnable patterns."""
    root = tmp_path_factory.mktemp("tiny") / "cifar-10-batches-py"
    write_cifar10_python(root, train_per_batch=120, test=200, seed=0)
    return root


@pytest.fixture(scope="session")
def photos96(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes of 96x120 photos (colour-coded), 12 each in train/ and 4 in val/: a user's folder of photos."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("pets96")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c, colour in enumerate([(200, 50, 50), (50, 200, 50), (50, 50, 200), (200, 200, 50)]):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.normal(0, 30, (96, 120, 3)) + np.array(colour)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root
