"""Run every benchmark script in this folder (each writes benchmarks/results/<name>.json)."""
import glob
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
failed = []
for script in sorted(glob.glob(os.path.join(here, "bench_*.py"))):
    print(f"== {os.path.basename(script)}", flush=True)
    if subprocess.call([sys.executable, script]) != 0:
        failed.append(os.path.basename(script))
if failed:
    sys.exit(f"benchmarks failed: {', '.join(failed)}")
