"""Runner (probprune.mc.runner): determinism, interrupt-and-resume with a killed worker, Dask LocalCluster,
and a smoke coverage run of a few hundred trials against the a-priori bounds (THEORY §6)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from probprune.cli import main
from probprune.mc import MCConfig, load_run, run, summarize
from probprune.mc.runner import plan

KEY = ["seed", "group", "trial", "method", "fraction", "delta"]


def _small(**kw):
    base = dict(widths=(6,), depths=(2,), activations=("relu",), methods=("magnitude", "random"),
                fractions=(0.2, 0.5), deltas=(0.1,), n_trials=8, batch_size=4, pgd_iters=10)
    base.update(kw)
    return MCConfig(**base)


def test_same_seed_same_rows_independent_of_batching(tmp_path):
    cfg = _small()
    r1 = run(cfg, out_root=tmp_path / "a", workers=1, progress=False)
    r2 = run(cfg, out_root=tmp_path / "b", workers=1, progress=False)
    a = pd.read_csv(r1.run_dir / "trials.csv")
    pd.testing.assert_frame_equal(a, pd.read_csv(r2.run_dir / "trials.csv"))
    # a different chunking gives the same rows (per-trial seed streams), and a new seed gives new networks
    c = load_run(run(cfg.replace(batch_size=3), out_root=tmp_path / "c", workers=1, progress=False).run_dir)[1]
    pd.testing.assert_frame_equal(a.sort_values(KEY, ignore_index=True), c.sort_values(KEY, ignore_index=True))
    d = load_run(run(cfg.replace(seeds=[1]), out_root=tmp_path / "d", workers=1, progress=False).run_dir)[1]
    assert not (d["err_lb"].values == a["err_lb"].values).all()
    assert (a["err_lb"] <= a["err_ub"] * (1 + 1e-9)).all() and (a["lb_method"] == "pgd").all()


def test_partial_run_and_stale_temp_file_resume(tmp_path):
    cfg = _small(n_trials=12)
    full = load_run(run(cfg, out_root=tmp_path / "full", workers=1, progress=False).run_dir)[1]
    r = run(cfg, out_root=tmp_path / "part", workers=1, progress=False, max_chunks=1)
    assert not r.complete and not (r.run_dir / "trials.csv").exists()
    (r.run_dir / "chunks" / ".tmp-s0_g0000_b000001.csv-999").write_text("half a chunk")  # a write cut short
    r2 = run(cfg, out_root=tmp_path / "part", workers=1, progress=False)
    assert r2.complete and r2.n_done_before == 1 and r2.n_ran == 2
    got = pd.read_csv(r2.run_dir / "trials.csv")
    pd.testing.assert_frame_equal(got, full)
    assert not list((r2.run_dir / "chunks").glob(".tmp-*"))


def _pool_workers(pid):
    """PIDs of the process-pool workers under ``pid`` (spawned via multiprocessing.spawn.spawn_main)."""
    import psutil

    out = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(c.cmdline()):
                out.append(c.pid)
        except psutil.Error:
            pass
    return out


def test_kill_worker_mid_run_then_resume(tmp_path):
    """A real run in a subprocess with 2 worker processes; SIGKILL one worker after the first chunk lands; the run
    stops with a one-line error; resuming completes it; rows equal an uninterrupted run: none lost or duplicated."""
    import yaml

    cfg = _small(n_trials=40, batch_size=4, widths=(24,), pgd_iters=40)
    cfile = tmp_path / "cfg.yaml"
    cfile.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", "from probprune.cli import main; main()", "mc", "run", str(cfile),
                          "--out", str(out), "--workers", "2", "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    chunks = out / cfg.hash / "chunks"
    killed = None
    try:
        t0 = time.time()
        while time.time() - t0 < 120 and p.poll() is None:
            if chunks.is_dir() and list(chunks.glob("s*.csv")):
                workers = _pool_workers(p.pid)
                if workers:
                    killed = workers[-1]
                    os.kill(killed, signal.SIGKILL)
                    break
            time.sleep(0.02)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert killed is not None, "the run finished before a worker could be killed"
    n_total = len(plan(cfg))
    n_done = len(list(chunks.glob("s*.csv")))
    assert p.returncode == 2 and b"run the same command again to resume" in err, err
    assert 1 <= n_done < n_total
    assert not (out / cfg.hash / "trials.csv").exists()
    res = run(cfg, out_root=out, workers=1, progress=False)
    assert res.complete and res.n_done_before == n_done and res.n_ran == n_total - n_done
    resumed = pd.read_csv(res.run_dir / "trials.csv")
    ref = pd.read_csv(run(cfg, out_root=tmp_path / "ref", workers=1, progress=False).run_dir / "trials.csv")
    assert not resumed.duplicated(KEY).any()
    assert len(resumed) == 40 * 2 * 2 * 1
    pd.testing.assert_frame_equal(resumed, ref)


def test_dask_localcluster_gives_same_rows(tmp_path):
    from dask.distributed import LocalCluster

    cfg = _small(activations=("identity", "relu"))
    local = load_run(run(cfg, out_root=tmp_path / "local", workers=1, progress=False).run_dir)[1]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                      protocol="tcp://", host="127.0.0.1") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        r = run(cfg, out_root=tmp_path / "dask", workers=1, scheduler=cluster.scheduler_address, progress=False)
    assert r.complete
    pd.testing.assert_frame_equal(load_run(r.run_dir)[1], local)


def test_smoke_coverage_few_hundred_trials(tmp_path, capsys):
    """300 linear networks per configuration: the exact error must respect the RM / RR bounds at the stated
    failure rate (consistent verdicts); a wrong bound (too small) would be refuted here."""
    cfg = MCConfig(widths=(12,), depths=(2, 3), activations=("identity",), methods=("magnitude", "random",
                   "random_rescaled"), fractions=(0.1, 0.4), deltas=(0.05,), n_trials=300, batch_size=150)
    r = run(cfg, out_root=tmp_path, workers=1, progress=False)
    _, df, complete = load_run(r.run_dir)
    assert complete and len(df) == 300 * 2 * 3 * 2
    s = summarize(df)
    assert (s["verdict"] == "consistent").all(), s[["network", "method", "fraction", "V_c", "V_u", "verdict"]]
    assert (df["lb_method"] == "exact").all() and (df["err_lb"] <= df["cert"] * (1 + 1e-9)).all()
    assert (s["loose_lb_q10"] > 1).all()
    # the same table from the CLI, as JSON
    with pytest.raises(SystemExit) as e:
        main(["mc", "report", str(r.run_dir), "--json"])
    assert e.value.code in (0, None)
    import json

    d = json.loads(capsys.readouterr().out)
    assert d["complete"] and d["verdict_counts"] == {"consistent": 12} and not d["refuted"]
    # a deliberately wrong "bound" (the exact error's median) is refuted by the same statistics
    from probprune.mc.stats import config_verdict

    g = df[(df["method"] == "magnitude") & (df["fraction"] == 0.4) & (df["depth"] == 2)]
    fake = g["err_lb"].median()
    V = int((g["err_lb"] > fake * (1 + 1e-9)).sum())
    assert config_verdict(V, V, len(g), 0.05).verdict == "refuted"


@pytest.mark.slow
def test_ctrl_c_then_resume(tmp_path):
    """SIGINT to the whole process group (what Ctrl-C does): exit 130 with the resume hint; resuming completes the
    run with exactly the rows of an uninterrupted run."""
    import yaml

    cfg = _small(n_trials=40, batch_size=4, widths=(24,), pgd_iters=40)
    cfile = tmp_path / "cfg.yaml"
    cfile.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "int"
    p = subprocess.Popen([sys.executable, "-c", "from probprune.cli import main; main()", "mc", "run", str(cfile),
                          "--out", str(out), "--workers", "2", "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         # a background job of a non-interactive shell inherits SIGINT ignored; restore the default
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    chunks = out / cfg.hash / "chunks"
    sent = False
    try:
        t0 = time.time()
        while time.time() - t0 < 120 and p.poll() is None:
            if chunks.is_dir() and list(chunks.glob("s*.csv")):
                os.killpg(p.pid, signal.SIGINT)
                sent = True
                break
            time.sleep(0.02)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert sent
    assert p.returncode == 130 and b"run the same command again to resume" in err, err
    n_done = len(list(chunks.glob("s*.csv")))
    assert 1 <= n_done < len(plan(cfg))
    res = run(cfg, out_root=out, workers=1, progress=False)
    ref = run(cfg, out_root=tmp_path / "ref", workers=1, progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(res.run_dir / "trials.csv"), pd.read_csv(ref.run_dir / "trials.csv"))


def test_refuted_configuration_is_reported_loudly(tmp_path, capsys):
    """A bound that is too small (here: rows rewritten with b = half the exact error, as a wrong bound would give)
    must come out as 'refuted' with a banner on stderr, not as a quiet table entry."""
    import shutil

    cfg = MCConfig(widths=(8,), depths=(2,), methods=("magnitude",), fractions=(0.3,), deltas=(0.05,),
                   n_trials=100, batch_size=100)
    r = run(cfg, out_root=tmp_path / "ok", workers=1, progress=False)
    bad = tmp_path / "bad" / cfg.hash
    shutil.copytree(r.run_dir, bad)
    from probprune.mc.integrity import Manifest, Record

    man = Manifest.load(bad, cfg.hash)
    for f in (bad / "chunks").glob("s*.csv"):
        df = pd.read_csv(f)
        df["bound"] = 0.5 * df["err_lb"].median()
        df["verdict"] = ["violated" if lb > b else ("satisfied" if ub <= b else "undecided")
                         for lb, ub, b in zip(df["err_lb"], df["err_ub"], df["bound"])]
        df.to_csv(f, index=False)
        # re-seal: the rewrite stands for a run whose bound really was this small (a damaged file is refused)
        man.chunks[f.stem] = Record.of(f.read_bytes(), len(df))
    (bad / "trials.csv").unlink()
    man.table = None
    man.save(bad)
    with pytest.raises(SystemExit):
        main(["mc", "report", str(bad)])
    cap = capsys.readouterr()
    assert "BOUND REFUTED" in cap.err and "refuted" in cap.out
    with pytest.raises(SystemExit):
        main(["mc", "report", str(r.run_dir)])
    assert "BOUND REFUTED" not in capsys.readouterr().err
