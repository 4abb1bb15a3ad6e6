"""Publishing the trained ControlNet: a model card, and the upload to the Hugging Face hub."""

from __future__ import annotations

import shlex
from pathlib import Path

from ..weights import COMMUNITY_BASE

CARD = """---
license: creativeml-openrail-m
{base_meta}tags:
- controlnet
- stable-diffusion
- land-cover
- seg2sat
---

# {name}

A ControlNet for {base_ref} that turns land-cover masks
(the 19 FLAIR classes, as colour images) into aerial images. Trained with Seg2Sat's
`seg2sat train` for {steps} steps at {resolution} px (batch {batch} per device, learning
rate {lr}); last loss {loss:.4f}.

```bash
{command}
```
"""

GENERATE = ('seg2sat generate mask.png --prompt "Aerial view of Lyon, France" --controlnet {controlnet} --out out',
            'seg2sat generate mask.png --prompt "Aerial view of Lyon, France" --model {model} --controlnet {controlnet} '
            '--out out')
"""How to use the ControlNet: on the default base model, or (second) on the one it was trained from."""


def write_model_card(output_dir: Path, args, steps: int, loss: float) -> Path:
    """``README.md`` next to the weights: what was trained from what, and how to use it.

    A base model given as a local folder is named as that folder, in plain text: a hub link
    (and a ``base_model`` entry, which the hub checks) would point to nothing.
    """
    base = str(args.pretrained_model_name_or_path or COMMUNITY_BASE)
    local = Path(base).is_dir()  # what diffusers loads from when the folder exists, whatever its name
    name = args.hub_model_id or Path(output_dir).name
    path = Path(output_dir) / "README.md"
    path.write_text(CARD.format(
        base_meta="" if local else f"base_model: {base}\n",
        base_ref=f"the base model in the local folder `{base}`" if local else f"[{base}](https://huggingface.co/{base})",
        name=name, steps=steps, resolution=args.resolution, batch=args.train_batch_size, lr=args.learning_rate,
        loss=loss, command=GENERATE[bool(args.pretrained_model_name_or_path)].format(
            model=shlex.quote(base), controlnet=shlex.quote(name if args.push_to_hub else str(output_dir))),
    ), encoding="utf-8")
    return path


def push_to_hub(output_dir: Path, args) -> str:
    """Upload the ControlNet, its card and the validation grids (not the checkpoints nor the logs)."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = create_repo(args.hub_model_id or Path(output_dir).name, exist_ok=True, token=args.hub_token).repo_id
    upload_folder(repo_id=repo_id, folder_path=str(output_dir), token=args.hub_token,
                  commit_message="Seg2Sat ControlNet training", ignore_patterns=["checkpoint-*", "logs/*", "*.tmp/*"])
    return repo_id
