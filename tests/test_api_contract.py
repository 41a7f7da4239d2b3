"""The Python API behaves as Python users expect (issue 28): bad values are ValueErrors that name the keyword,
Ctrl-C is not swallowed by `except Exception`, training can be silent or logged, files honour the umask."""

import logging
import os
import stat

import pytest

import resnetlab
from resnetlab.files import atomic_write


def test_bad_input_is_a_value_error_that_names_the_keyword(tmp_path):
    assert issubclass(resnetlab.UserError, ValueError)
    with pytest.raises(ValueError) as e:
        resnetlab.evaluate(data=tmp_path / "nothing-here", model="cifar_resnet20", weights="akamaster")
    assert "--" not in str(e.value) and str(e.value).startswith("evaluate: ")
    with pytest.raises(ValueError, match="checkpoint="):
        resnetlab.load()
    for bad in ("5", 0, -1, True):
        with pytest.raises(ValueError, match="stop_after"):
            resnetlab.train(model="cifar_resnet8", data=str(tmp_path), out=str(tmp_path / "r"), stop_after=bad)


def test_an_interrupted_run_is_a_keyboard_interrupt():
    assert issubclass(resnetlab.RunInterrupted, KeyboardInterrupt)
    assert not issubclass(resnetlab.RunInterrupted, Exception)


def test_training_can_be_quiet_or_logged(tiny_cifar, tmp_path, capsys):
    common = dict(model="cifar_resnet8", data=str(tiny_cifar), iters=2, batch_size=32, eval_every=2, log_every=1)
    resnetlab.train(out=str(tmp_path / "quiet"), quiet=True, **common)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("resnetlab")
    handler = Keep()
    logger.addHandler(handler)
    try:
        resnetlab.train(out=str(tmp_path / "logged"), **common)
    finally:
        logger.removeHandler(handler)
    assert any("fast path" in line for line in records) and any("iter" in line for line in records)
    assert "fast path" not in capsys.readouterr().out  # the caller's handler took them


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / f"out-{umask:o}.txt"
        atomic_write(path, lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_export_is_a_library_function(tiny_cifar, tmp_path):
    resnetlab.train(model="cifar_resnet8", data=str(tiny_cifar), out=str(tmp_path / "r"), iters=2, batch_size=32,
                    quiet=True)
    r = resnetlab.export(tmp_path / "m.pt2", checkpoint=tmp_path / "r" / "last.pt")
    assert r["format"] == "pt2" and r["max_difference"] < 1e-4 and (tmp_path / "m.pt2").is_file()
    with pytest.raises(ValueError, match="force"):
        resnetlab.export(tmp_path / "m.pt2", checkpoint=tmp_path / "r" / "last.pt")
