"""The README's Python example and first command must work as written."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tmp_path, tiny_dir):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    shutil.copytree(tiny_dir, tmp_path / "tiny")
    shutil.copytree(ROOT / "examples" / "masks", tmp_path / "examples" / "masks")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "town-42.png").is_file() and (tmp_path / "town-43.png").is_file()
    assert (tmp_path / "town-inpainted.png").is_file()


@pytest.mark.slow
def test_readme_quickstart_command_runs(tmp_path):
    """The first command, after its install part (CI has just run it): images, then the UI answering."""
    line = next(row for row in README.splitlines() if row.startswith("pip install torch"))
    run_part = line.split("requirements.txt && ", 1)[1]
    command = run_part.replace("seg2sat ", f"{sys.executable} -m seg2sat ")
    shutil.copytree(ROOT / "examples" / "masks", tmp_path / "examples" / "masks")
    env = dict(os.environ, SEG2SAT_UI_PORT="0", HF_HUB_OFFLINE="1")  # a free port; no weights here
    proc = subprocess.Popen(command, shell=True, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url, seen = None, []
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            out = proc.stdout.readline()
            if not out and proc.poll() is not None:
                break
            seen.append(out)
            url = next(iter(re.findall(r"http://\S+/", out)), None)
        assert url, "".join(seen)
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["town-seed1.png", "town-seed2.png"]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and "Drawing2Map" in page.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
