"""Memory one request costs before any queue: peak RSS above idle while a server parses a noisy mask.

A random 2048² JPEG (2.2 MB, inside every limit) is the worst mask there is: nearly every
pixel is off-palette and needs the neighbour rules of :func:`seg2sat.masks.snap`. Each case
runs in a fresh process (peak RSS is per process), after a warm-up on a small mask, so the
figure is what the request adds: what ``/api/masks/import``, ``/api/generate`` and
``POST /predict`` each hold while parsing it.

    python benchmarks/bench_request_memory.py            # every case, 2048² noise
    python benchmarks/bench_request_memory.py --side 1024 --cases snap

Before the snapping rules worked block by block (issue 27), every case took ~1.73 GB above
idle; after, ~150-175 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

CASES = ("snap", "ui-import", "ui-generate", "serve-predict")

CHILD = r"""
import base64, io, json, sys, gc
import os
import numpy as np
from PIL import Image

case, path = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
b64 = base64.b64encode(raw).decode()

def rss():
    with open('/proc/self/statm') as f:  # Linux: resident pages, no dependency
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

if case == "snap":
    from seg2sat import masks
    from seg2sat.wire import decode_image
    def run(data):
        masks.snap(decode_image(data, "mask"))
elif case.startswith("ui-"):
    from seg2sat.webui import create_app
    app = create_app({"BACKEND": "procedural", "WARMUP": False, "QUEUE_SIZE": 100})
    client = app.test_client()
    def run(data):
        if case == "ui-import":
            r = client.post("/api/masks/import", json={"image": data})
        else:
            r = client.post("/api/generate", json={"mask": data, "prompt": "x", "steps": 1})
        assert r.status_code in (200, 202), r.get_json()
else:
    from seg2sat.serving import Service, create_app
    from seg2sat.settings import Settings
    settings = Settings(backend="procedural")
    service = Service(settings)
    service.run = lambda req: None  # parsing only: the request's cost before the queue
    def run(data):
        service.parse({"inputs": "x", "parameters": {"image": data}})

small = io.BytesIO()
Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(small, "JPEG")
run(base64.b64encode(small.getvalue()).decode())
gc.collect()
idle = rss()
# The peak of this request alone: RSS sampled while it runs (ru_maxrss would also count whatever peak the
# process reached before, e.g. while importing its libraries, which is not the request's cost).
import threading
samples, done = [idle], threading.Event()
def sample():
    while not done.is_set():
        samples.append(rss())
        done.wait(0.002)
watcher = threading.Thread(target=sample)
watcher.start()
try:
    run(b64)
finally:
    done.set()
    watcher.join()
samples.append(rss())
print(json.dumps({"case": case, "idle_mb": idle / 2**20, "peak_above_idle_mb": (max(samples) - idle) / 2**20}))
"""


def noisy_jpeg(side: int, path: str) -> int:
    """A random-colour JPEG of ``side``², the noisiest mask: returns its size in bytes."""
    pixels = np.random.default_rng(1).integers(0, 256, (side, side, 3), np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    with open(path, "rb") as f:
        return len(f.read())


def measure(case: str, path: str) -> dict:
    """One case in a fresh process: ``{"idle_mb", "peak_above_idle_mb"}`` (what the tests assert on)."""
    out = subprocess.run([sys.executable, "-c", CHILD, case, path], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        raise RuntimeError(f"{case} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=2048)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    args = p.parse_args(argv)
    path = os.path.join(tempfile.gettempdir(), f"seg2sat-noise-{args.side}.jpg")
    size = noisy_jpeg(args.side, path)
    print(f"noisy {args.side}x{args.side} JPEG: {size / 2**20:.1f} MB")
    print(f"{'case':<16}{'idle MB':>10}{'peak above idle MB':>22}")
    for case in args.cases:
        row = measure(case, path)
        print(f"{case:<16}{row['idle_mb']:>10.0f}{row['peak_above_idle_mb']:>22.0f}")


if __name__ == "__main__":
    main()
