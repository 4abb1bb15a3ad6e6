"""Publishing the trained ControlNet: a model card, and the upload to the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path

CARD = """---
license: creativeml-openrail-m
base_model: {base}
tags:
- controlnet
- stable-diffusion
- land-cover
- seg2sat
---

# {name}

A ControlNet for [{base}](https://huggingface.co/{base}) that turns land-cover masks
(the 19 FLAIR classes, as colour images) into aerial images. Trained with Seg2Sat's
`seg2sat train` for {steps} steps at {resolution} px (batch {batch} per device, learning
rate {lr}); last loss {loss:.4f}.

```bash
seg2sat generate mask.png --prompt "Aerial view of Lyon, France" --controlnet {name} --out out
```
"""


def write_model_card(output_dir: Path, args, steps: int, loss: float) -> Path:
    """``README.md`` next to the weights: what was trained from what, and how to use it."""
    path = Path(output_dir) / "README.md"
    path.write_text(CARD.format(
        base=args.pretrained_model_name_or_path, name=args.hub_model_id or Path(output_dir).name, steps=steps,
        resolution=args.resolution, batch=args.train_batch_size, lr=args.learning_rate, loss=loss,
    ), encoding="utf-8")
    return path


def push_to_hub(output_dir: Path, args) -> str:
    """Upload the ControlNet, its card and the validation grids (not the checkpoints nor the logs)."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = create_repo(args.hub_model_id or Path(output_dir).name, exist_ok=True, token=args.hub_token).repo_id
    upload_folder(repo_id=repo_id, folder_path=str(output_dir), token=args.hub_token,
                  commit_message="Seg2Sat ControlNet training", ignore_patterns=["checkpoint-*", "logs/*", "*.tmp/*"])
    return repo_id
