"""train, evaluate and predict keep freed memory in the process on the CPU (runtime/memory.py): the step's
activations come back without page faults, and the user's own allocator settings win."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from resnetlab.cli.main import main
from resnetlab.errors import UserError
from resnetlab.runtime import memory

# Faults of writing a 40 MiB tensor 10 times, freed between: above glibc's largest dynamic mmap threshold
# (32 MiB), so by default every round maps it afresh and faults each of its ~10,000 pages again.
FAULTS = textwrap.dedent("""
    import resource, sys, torch
    from resnetlab.runtime import memory
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.ones(10 << 20)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults()
    default = faults()
    said = memory.keep_freed_memory()
    faults()  # the first round after it maps the block once more, then keeps it
    print(default, faults(), said)
""")


def _faults(env_extra: dict[str, str]) -> tuple[int, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "RESNETLAB_KEEP"))}
    env.update(env_extra, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True).stdout
    default, kept, said = out.split(maxsplit=2)
    return int(default), int(kept), said.strip()


@pytest.mark.skipif(memory._glibc() is None, reason="glibc's allocator: elsewhere nothing is changed")
def test_kept_memory_is_not_faulted_again():
    default, kept, said = _faults({})
    assert said == "kept"
    assert default > 50_000 and kept < default / 50, (default, kept)


def test_the_users_choice_wins_and_a_bad_setting_is_refused_by_name(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("RESNETLAB_KEEP_FREED_MEMORY", "0")
    assert memory.keep_freed_memory() == "left as it is (RESNETLAB_KEEP_FREED_MEMORY=0)"
    monkeypatch.setenv("RESNETLAB_KEEP_FREED_MEMORY", "1")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000")
    assert memory.keep_freed_memory() == "left as it is (GLIBC_TUNABLES is set)"
    monkeypatch.setenv("RESNETLAB_KEEP_FREED_MEMORY", "yes")
    with pytest.raises(UserError, match="RESNETLAB_KEEP_FREED_MEMORY='yes'"):
        memory.keep_freed_memory()


def test_training_evaluating_and_predicting_on_the_cpu_ask_for_it(tiny_cifar, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append("asked") or "kept")
    assert main(["train", "--model", "cifar_resnet8", "--batch-size", "32", "--workers", "0", "--iters", "2",
                 "--data", str(tiny_cifar), "--out", str(tmp_path / "run"), "--fast", "off"]) == 0
    assert calls == ["asked"]
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--data", str(tiny_cifar),
                 "--split", "test"]) == 0
    assert calls == ["asked"] * 2
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "last.pt"), str(tmp_path / "a.png")]) == 0
    assert calls == ["asked"] * 3
