"""Run the endpoint locally: ``python endpoint/serve.py [--model tiny] [--port 8080]``.

The same as ``seg2sat serve``: the Inference Endpoints routes (GET /health, POST / and
/predict) and protocol, served by waitress with one generation at a time.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(here, "seg2sat")):
        sys.path.insert(0, here)  # a repository built by build_repository.py carries its own copy
    from seg2sat.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
