"""Issue 13: Ctrl-C on `probprune mc run` with 2 workers exits within 2 s, keeps the finished chunks, and a resume
gives exactly the rows of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from probprune.mc import MCConfig, run
from probprune.mc.runner import plan


def _group_running(pgid: int) -> list[str]:
    """Processes of the group that still run (zombies waiting for a reaper do not count)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
                if int(st[2]) == pgid and st[0] != "Z":
                    out.append(open(f"/proc/{d}/cmdline").read().replace("\0", " ")[:100])
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.slow
def test_sigint_mc_run_two_workers_exits_fast_and_resumes(tmp_path):
    import yaml

    cfg = MCConfig(widths=(24,), depths=(2,), activations=("relu",), methods=("magnitude", "random"),
                   fractions=(0.2, 0.5), deltas=(0.1,), n_trials=60, batch_size=4, pgd_iters=60)
    cfile = tmp_path / "cfg.yaml"
    cfile.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "int"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    errf = open(tmp_path / "stderr.txt", "w+b")
    p = subprocess.Popen([sys.executable, "-c", "from probprune.cli import main; main()", "mc", "run", str(cfile),
                          "--out", str(out), "--workers", "2", "--no-progress"],
                         stdout=subprocess.DEVNULL, stderr=errf, start_new_session=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    chunks = out / cfg.hash / "chunks"
    t_sent = None
    try:
        t0 = time.time()
        while time.time() - t0 < 180 and p.poll() is None:
            if chunks.is_dir() and list(chunks.glob("s*.csv")):
                os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
                t_sent = time.monotonic()
                break
            time.sleep(0.02)
        p.wait(timeout=60)
        t_exit = time.monotonic()
        # every worker gone too (nothing of the command's process group still runs)
        while _group_running(p.pid) and time.monotonic() - t_sent < 5:
            time.sleep(0.02)
        t_group = time.monotonic()
        left = _group_running(p.pid)
    finally:
        if p.poll() is None or _group_running(p.pid):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert t_sent is not None, "no chunk finished before the timeout"
    errf.seek(0)
    err = errf.read()
    print(f"SIGINT -> exit {t_exit - t_sent:.2f} s, -> no process of the group running {t_group - t_sent:.2f} s")
    assert p.returncode == 130, err
    assert b"run the same command again to resume" in err and b"Traceback" not in err, err
    assert t_exit - t_sent < 2.0, f"exit took {t_exit - t_sent:.2f} s after SIGINT"
    assert t_group - t_sent < 2.0, f"still running {t_group - t_sent:.2f} s after SIGINT: {left}"
    n_done = len(list(chunks.glob("s*.csv")))
    assert 1 <= n_done < len(plan(cfg))
    res = run(cfg, out_root=out, workers=1, progress=False)
    ref = run(cfg, out_root=tmp_path / "ref", workers=1, progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(res.run_dir / "trials.csv"), pd.read_csv(ref.run_dir / "trials.csv"))
