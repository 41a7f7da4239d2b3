"""Messages that misled (issue 40.23): a read-only run folder blamed a planted link, a 2x41 image "would take
gigabytes", and a float TIFF of NaN was classified as black with numpy's cast warning leaking out."""

import subprocess
import warnings

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.data.folders import decode
from resnetlab.data.preprocess import pixels
from resnetlab.errors import UserError
from tests.clitools import mounted_tmpfs


def test_resume_on_a_read_only_mount_says_read_only_not_link(tiny_cifar, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "mnt", "64m") as mount:
        run = mount / "run"
        assert main(["train", "--model", "cifar_resnet8", "--data", str(tiny_cifar), "--out", str(run), "--iters",
                     "4", "--device", "cpu", "--fast", "off", "--batch-size", "16", "--stop-after", "2"]) == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        capsys.readouterr()
        assert main(["train", "--resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert "Read-only file system" in err and "somewhere writable" in err and "link" not in err


def test_a_small_elongated_image_is_refused_with_what_resizing_it_would_make(tmp_path):
    Image.new("RGB", (2, 41)).save(tmp_path / "thin.png")
    with pytest.raises(UserError) as refused:
        decode(tmp_path / "thin.png")
    assert "2x41, longer than 20:1" in str(refused.value) and "4,592 px long" in str(refused.value)
    assert "gigabytes" not in str(refused.value) and "GiB" not in str(refused.value)
    with pytest.raises(ValueError, match=r"2x60000.*6,720,000 px long \(4.2 GiB\)"):
        pixels(Image.new("L", (2, 60000)))


def test_a_float_tiff_of_nan_is_refused_naming_the_file_without_a_warning(tmp_path):
    path = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32), mode="F").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match=f"{path}: a 32-bit float image holding NaN"):
            decode(path)
    Image.fromarray(np.full((8, 8), 300.0, dtype=np.float32), mode="F").save(path)
    assert int(decode(path).min()) == 255  # finite values beyond 8 bits are still clipped, as before
