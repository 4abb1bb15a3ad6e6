"""Start-up time of the ``seg2sat`` command: ``--help`` and model-free commands must answer at once.

    python benchmarks/bench_cli_startup.py [--compare REV] [--runs N]

Times ``python -m seg2sat --help``, ``generate --help`` and ``prepare --help`` (median wall
time of N runs, each a fresh process) for this checkout and, with ``--compare REV``, for a
git worktree of REV, side by side in one run (the machines are noisy). The floor of an
eager CLI is printed too: ``import torch, diffusers`` alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--help"], ["generate", "--help"], ["prepare", "--help"])


def wall(argv: list[str], cwd: Path, runs: int) -> float:
    """Median seconds of ``python ARGV`` run from ``cwd`` with that checkout first on the path."""
    env = dict(os.environ, PYTHONPATH=str(cwd))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", metavar="REV", help="also time this git revision (e.g. HEAD~3)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    trees = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare:
            old = Path(tmp) / "old"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.compare],
                           check=True, capture_output=True)
            trees[args.compare] = old
        try:
            print(f"{'command':<28}" + "".join(f"{name:>16}" for name in trees))
            for argv in COMMANDS:
                row = [wall(["-m", "seg2sat", *argv], tree, args.runs) for tree in trees.values()]
                print(f"{'seg2sat ' + ' '.join(argv):<28}" + "".join(f"{t:>15.2f}s" for t in row))
            floor = wall(["-c", "import torch, diffusers"], ROOT, args.runs)
            print(f"{'(import torch, diffusers)':<28}{floor:>15.2f}s")
        finally:
            if args.compare:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)


if __name__ == "__main__":
    main()
