"""Assemble a folder that deploys as a Hugging Face Inference Endpoint.

    python endpoint/build_repository.py OUT [--weights FOLDER]

OUT gets ``handler.py``, ``requirements.txt``, a copy of the ``seg2sat`` package
(handler.py imports it from there, so the endpoint needs nothing from this
repository at run time) and, with ``--weights``, the model: a ControlNet folder
(``config.json`` of a ControlNetModel, used on SD 2.1 base) or a full pipeline folder
(``model_index.json`` with a ControlNet). Upload OUT as a model repository and point an
endpoint at it (see endpoint/README.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def build_repository(out: str | Path, weights: str | Path | None = None) -> Path:
    """Write the endpoint repository into ``out`` (created; refused if it holds files already)."""
    import seg2sat
    from seg2sat.pipelines import is_controlnet_folder, is_full_pipeline

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; give a new folder")
    if weights is not None and not (is_full_pipeline(weights) or is_controlnet_folder(weights)):
        raise ValueError(f"--weights {weights} is neither a ControlNet folder (config.json of a ControlNetModel) "
                         "nor a full pipeline folder (model_index.json with a controlnet)")
    out.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        shutil.copytree(weights, out, ignore=_SKIP, dirs_exist_ok=True)
    for name in ("handler.py", "requirements.txt"):
        shutil.copy2(HERE / name, out / name)
    shutil.copytree(Path(seg2sat.__file__).parent, out / "seg2sat", ignore=_SKIP)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="new folder to write the endpoint repository into")
    parser.add_argument("--weights", type=Path, default=None,
                        help="ControlNet folder or full pipeline folder to ship in the repository")
    args = parser.parse_args(argv)
    try:
        print(build_repository(args.out, args.weights))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if str(HERE.parent) not in sys.path and (HERE.parent / "seg2sat").is_dir():
        sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
    sys.exit(main())
