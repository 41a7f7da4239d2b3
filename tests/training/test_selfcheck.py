"""The fast path's self-check rejects broken steps and accepts healthy ones (issue 28).

Each defect a review injected into the candidate step of ResNet-20 on a batch of 128, and which the one-step,
norm-only check accepted, is rejected at both the fp32 and the bf16 tolerances; steps that differ from the
reference by rounding alone (another memory layout; bf16 autocast) pass. The defects are those of
benchmarks/selfcheck_tolerances.py, which measured the tolerances on the paper's CIFAR nets.
"""

import importlib.util
import tempfile

import pytest
import torch

from resnetlab.data.batch import Batch
from resnetlab.training import fastcheck
from resnetlab.training import probe as checks
from resnetlab.training.fastpath import FastPath
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("selfcheck_tolerances", REPO / "benchmarks" / "selfcheck_tolerances.py")
tolerances = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tolerances)


@pytest.fixture(scope="module")
def resnet20(tiny_cifar):
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as other:
        train_step, batches, lrs, runs = tolerances.eager_stack("cifar_resnet20", str(tiny_cifar), out)
        reference = tolerances.probe(train_step, batches, lrs, fastcheck.EAGER_FP32)
        twin = tolerances.probe(train_step, checks.perturbed(batches), lrs, fastcheck.EAGER_FP32)
        contiguous, c_batches, _, c_runs = tolerances.eager_stack("cifar_resnet20", str(tiny_cifar), other,
                                                                  channels_last="off")
        yield train_step, batches, lrs, (reference, twin), (contiguous, c_batches)
        for run in runs + c_runs:
            run.run_dir.release()


@pytest.mark.parametrize("defect", list(tolerances.DEFECTS))
def test_each_defect_is_rejected_at_every_precision(resnet20, defect):
    train_step, batches, lrs, (reference, twin), _ = resnet20
    broken = tolerances.probe(train_step, batches, lrs, fastcheck.EAGER_FP32, tolerances.DEFECTS[defect])
    for precision in ("fp32", "bf16", "fp16"):
        why, _ = checks.compare(broken, reference, precision, twin)
        assert why is not None, f"{defect} accepted at the {precision} tolerances: {checks.distances(broken, reference)}"


def test_rounding_alone_passes_with_margin(resnet20):
    train_step, _, lrs, (reference, twin), (contiguous, c_batches) = resnet20
    healthy = tolerances.probe(contiguous, c_batches, lrs, fastcheck.EAGER_FP32)
    d = checks.distances(healthy, reference)
    assert checks.compare(healthy, reference, "fp32")[0] is None  # without the twin: not chaotic, judged whole
    tol = checks.TOLERANCE["fp32"]
    assert d["loss"] < tol["loss"] / 10 and d["cosine"] > 0.99 and d["bn"] < tol["bn"] / 10
    assert d["sgd"] < checks.SGD_RULE_TOLERANCE / 100 and 0.9 < d["bn_moved"] < 1.1


def test_bf16_autocast_passes_at_its_tolerance(resnet20):
    train_step, batches, lrs, (reference, _), _ = resnet20
    bf16 = tolerances.probe(train_step, batches, lrs, FastPath(None, torch.bfloat16, "eager bf16"))
    assert checks.compare(bf16, reference, "bf16")[0] is None


def test_the_probe_undoes_its_steps_and_leaves_the_loss_scale(resnet20):
    train_step, batches, lrs, _, _ = resnet20
    before = [t.clone() for t in train_step.state_tensors()]
    tolerances.probe(train_step, batches, lrs, fastcheck.EAGER_FP32)
    assert all(torch.equal(a, b) for a, b in zip(before, train_step.state_tensors()))
    train_step.use(FastPath(None, torch.float16, "eager fp16 (CPU autocast)"))
    try:
        scale = train_step.scaler.get_scale()
        few = [Batch(b[0][:8], b[1][:8]) for b in batches]  # CPU fp16 is emulated: 8 images, not 128 (46 s)
        checks.Probe(train_step, few, lrs).run()
        assert train_step.scaler.get_scale() == scale
    finally:
        train_step.use(fastcheck.EAGER_FP32)


def test_a_verdict_names_the_machine_by_isa_and_the_network_as_built(resnet20):
    from resnetlab.runtime.devices import cpu_isa

    train_step = resnet20[0]
    key = fastcheck.verdict_key(train_step, FastPath("default", torch.bfloat16, "compiled bf16"))
    for part in (cpu_isa(), "shortcut=", "style='paper'", "zero_init_residual=False", "classes 10", "resnetlab ",
                 "mixup_alpha=0.0", "model_ema=False", "nesterov=False"):
        assert part in key


def test_old_or_malformed_verdicts_are_checked_again(tmp_path, monkeypatch):
    path = tmp_path / "verdicts.json"
    monkeypatch.setattr(fastcheck, "verdicts_path", lambda: path)
    path.write_text('{"old": {"ok": true, "checked": "2020-01-01T00:00:00+00:00"}, "bad": [1], '
                    '"fresh": {"ok": false, "why": "x", "checked": "2999-01-01T00:00:00+00:00"}}')
    assert list(fastcheck._load_verdicts()) == ["fresh"]
    path.unlink()
    import os
    os.mkfifo(path)  # a FIFO planted at the cache is never opened (it would block forever)
    assert fastcheck._load_verdicts() == {}


def _candidates_worker(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from resnetlab.runtime.distributed import DistInfo

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)

    class Ranked:  # what common_candidates reads of a train_step
        dist, device = DistInfo(rank, 2, rank), torch.device("cpu")

    bf16 = [FastPath("default", torch.bfloat16, "compiled bf16"), FastPath(None, torch.bfloat16, "eager bf16"),
            FastPath("default", None, "compiled fp32"), fastcheck.EAGER_FP32]
    mine = bf16 if rank == 0 else [FastPath("default", None, "compiled fp32"), fastcheck.EAGER_FP32]
    results.put((rank, [p.name for p in fastcheck.common_candidates(Ranked(), mine)]))
    dist.destroy_process_group()


def test_ranks_on_other_hardware_check_the_same_paths():
    """A rank without native bf16 has fewer candidates: both ranks check only the common ones, in one order,
    so neither waits in a collective the other never reaches."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_candidates_worker, args=(r, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got[0] == got[1] == ["compiled fp32", "eager fp32"]


def test_seeds_trained_together_never_resume_in_fp16(monkeypatch):
    from resnetlab.training import fastpath
    from resnetlab.training.config import resolve

    monkeypatch.setattr(fastpath, "native_precisions", lambda device: [torch.float16, None])
    cfg = resolve("cifar-paper", {}, {"model": "cifar_resnet8", "data": "x", "out": "y", "iters": 10})
    cpu = torch.device("cpu")
    assert fastpath.choose(cfg, cpu, runs=1, recorded="fp16").amp == torch.float16
    assert fastpath.choose(cfg, cpu, runs=3, recorded="fp16").amp != torch.float16


def test_a_ctrl_c_that_breaks_the_compiler_is_the_users_stop_not_a_rejection():
    """torch.compile's workers die of the same Ctrl-C and the compile fails with another exception: that must
    stop the run (KeyboardInterrupt), not pass for a path this machine cannot compile."""
    import os
    import signal

    class Broken:
        def run_scaled(self):
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass  # swallowed, as a compiler's worker pool may
            raise RuntimeError("a compile worker died")

    with pytest.raises(KeyboardInterrupt):
        fastcheck._probe_path(Broken(), None, None, "bf16")

    class Failing:
        def run_scaled(self):
            raise RuntimeError("this machine cannot compile it")

    why, _, _ = fastcheck._probe_path(Failing(), None, None, "bf16")
    assert why.startswith("it failed: RuntimeError")


@pytest.fixture(scope="module")
def plain20_with_head_lr(tiny_cifar):
    """plain-20 (chaotic at fp32: judged next to the output) with the classifier at its own lr (--head-lr)."""
    with tempfile.TemporaryDirectory() as out:
        train_step, batches, lrs, runs = tolerances.eager_stack("cifar_plain20", str(tiny_cifar), out, head_lr=1.0)
        reference = tolerances.probe(train_step, batches, lrs, fastcheck.EAGER_FP32)
        twin = tolerances.probe(train_step, checks.perturbed(batches), lrs, fastcheck.EAGER_FP32)
        yield train_step, batches, lrs, reference, twin
        for run in runs:
            run.run_dir.release()


@pytest.mark.parametrize("defect", ["lr x10 in the step", "lr x0.1 in the step", "--head-lr ignored"])
def test_a_wrong_learning_rate_in_the_step_is_rejected_on_a_plain_net(plain20_with_head_lr, defect):
    """Issue 40.1: the lr the step reads was checked against the optimizer's own copy (which the step wrote),
    and plain-20's loss moves too little in one step to show it: the weights' movement and SGD's rule at the
    schedule's lr see it."""
    train_step, batches, lrs, reference, twin = plain20_with_head_lr
    make = tolerances.HEAD_LR_IGNORED[1] if defect == "--head-lr ignored" else tolerances.DEFECTS[defect]
    broken = tolerances.probe(train_step, batches, lrs, fastcheck.EAGER_FP32, make)
    for precision in ("fp32", "bf16"):
        why, _ = checks.compare(broken, reference, precision, twin)
        assert why is not None and "weights moved" in why, (precision, checks.distances(broken, reference))
    healthy = tolerances.probe(train_step, batches, lrs, FastPath(None, torch.bfloat16, "eager bf16"))
    assert checks.compare(healthy, reference, "bf16", twin)[0] is None


@pytest.mark.parametrize("setting, value", [("freeze", "backbone"), ("head_lr", 1.0), ("label_smoothing", 0.1),
                                            ("momentum", 0.5), ("weight_decay", 0.0)])
def test_a_verdict_is_not_reused_for_a_step_it_never_checked(resnet20, setting, value):
    """Issue 40.3: a from-scratch verdict was reused for a frozen fine-tuning graph (and other settings that
    change the step)."""
    import dataclasses
    from types import SimpleNamespace

    train_step = resnet20[0]
    run = train_step.runs[0]
    path = FastPath("default", torch.bfloat16, "compiled bf16")
    other = SimpleNamespace(runs=[SimpleNamespace(cfg=dataclasses.replace(run.cfg, **{setting: value}), data=run.data)],
                            k=train_step.k, device=train_step.device)
    assert fastcheck.verdict_key(other, path) != fastcheck.verdict_key(train_step, path)
