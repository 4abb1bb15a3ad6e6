#!/usr/bin/env python3
"""Same as `seg2sat prepare …`, for running from this folder: python prepare.py FLAIR_ROOT OUT [options]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's seg2sat, even if not installed

from seg2sat.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
