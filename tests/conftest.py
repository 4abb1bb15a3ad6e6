"""Shared fixtures: the tiny pipeline is built once per test session and loaded from disk like a user would."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from seg2sat import masks

ROOT = Path(__file__).resolve().parents[1]
# One torch thread per process: test servers, subprocesses and the browser share two cores,
# and PyTorch's spinning worker threads slow everything down many times when cores are busy.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Subprocesses (`python -m seg2sat …`) import this checkout, whatever is pip-installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from seg2sat.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_dir):
    from seg2sat.pipelines import load_pipeline

    return load_pipeline(tiny_dir)


@pytest.fixture
def town_ids() -> np.ndarray:
    """A small hand-made map: fields, a road, a block of buildings and a river (64 x 128)."""
    ids = np.full((64, 128), 11, dtype=np.uint8)  # agricultural land
    ids[:, 60:68] = 3  # road
    ids[8:30, 10:40] = 1  # buildings
    ids[40:, 90:] = 5  # water
    return ids


@pytest.fixture
def town_png(tmp_path, town_ids):
    path = tmp_path / "town.png"
    masks.to_image(town_ids).save(path)
    return path
