"""examples/slurm_train.sh under stand-ins for srun and scontrol (issue 40.15): it runs under `set -u` with
--gres (no SLURM_GPUS_PER_NODE), and at the time limit's warning (USR1) it stops the run with SIGTERM and
requeues the job, which SLURM's --requeue alone does not do on TIMEOUT."""

import os
import signal
import subprocess
import time

from tests.conftest import REPO

STUB_SRUN = """#!/bin/bash
echo "srun $*" >> "$LOG"
trap 'echo "run got TERM" >> "$LOG"; exit 143' TERM
while true; do sleep 0.1; done
"""
STUB_SCONTROL = """#!/bin/bash
if [ "$1" = show ]; then echo node1; else echo "scontrol $*" >> "$LOG"; fi
"""


def test_the_slurm_script_stops_the_run_and_requeues_at_the_time_limit(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", STUB_SRUN), ("scontrol", STUB_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log), "SLURM_JOB_NODELIST": "node[1-2]",
           "SLURM_NNODES": "2", "SLURM_JOB_ID": "77", "SLURM_GPUS_ON_NODE": "4"}  # --gres=gpu:4
    proc = subprocess.Popen(["bash", str(REPO / "examples" / "slurm_train.sh")], env=env, cwd=tmp_path)
    deadline = time.time() + 20
    while not (log.is_file() and "srun" in log.read_text()):
        assert proc.poll() is None and time.time() < deadline, "the script did not start the run"
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@120 sends two minutes before the limit
    assert proc.wait(timeout=20) == 0
    lines = log.read_text().splitlines()
    assert "--nproc-per-node 4" in lines[0] and "--rdzv-endpoint node1:29500" in lines[0]
    assert lines[1:] == ["run got TERM", "scontrol requeue 77"]
