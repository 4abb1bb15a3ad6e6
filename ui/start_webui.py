"""Start the Drawing2Map web UI: ``python ui/start_webui.py [--model DIR] [--port 7860]``.

A thin wrapper around ``seg2sat ui``; the app lives in ``seg2sat/webui/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from seg2sat.cli import main

if __name__ == "__main__":
    sys.exit(main(["ui", *sys.argv[1:]]))
