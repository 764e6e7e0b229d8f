"""Start-up time of `samt-run`: `--help` and a rejected config, median of repeated processes.

    python scripts/bench_startup.py [--repeats 5]

Each case runs in a fresh process from a temporary folder; `import torch` alone is timed as the
reference for what the CLI avoids. Results go to stdout (docs/performance.md, start-up time).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _time(cmd: list[str], cwd: str, expect: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}, expected {expect}:\n"
                         f"{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    samt_run = str(BIN / "samt-run")
    cases = [
        ("samt-run --help", [samt_run, "--help"], 0),
        ("samt-run epochs=0 (rejected)", [samt_run, "epochs=0", "hydra.run.dir=run"], 2),
        ("samt-run optimizer.eta0=-1 (rejected)",
         [samt_run, "optimizer.eta0=-1", "hydra.run.dir=run"], 2),
        ("samt-run +optimizer.foo=1 (rejected; unknown keys need torch)",
         [samt_run, "+optimizer.foo=1", "hydra.run.dir=run"], 2),
        ("python -c 'import torch' (reference)", [sys.executable, "-c", "import torch"], 0),
    ]
    print(f"median of {args.repeats} fresh processes (seconds)")
    with tempfile.TemporaryDirectory() as cwd:
        for name, cmd, expect in cases:
            times = [_time(cmd, cwd, expect) for _ in range(args.repeats)]
            print(f"{statistics.median(times):7.2f}  {name}  (min {min(times):.2f}, "
                  f"max {max(times):.2f})")


if __name__ == "__main__":
    main()
