"""``--hard-first``: more of the image budget for the masks the filter model gets wrong (FreeMask's resampling).

FreeMask ranks its masks by how hard their classes are for a model and gives each a
number of synthetic images rising linearly with that rank (about 1 for the easiest to 20
for the hardest). Here the run has no images before it starts, so it works in two
passes: every mask first gets its image 0 (per layout), which the filter scores; then
the budget of the plain run (``-n`` × masks) is shared out again from those scores —
at least 1 image each, the rest in proportion to the mask's hardness rank (1 for the
highest score, M for the lowest), so the hardest mask gets about ``2n - 1`` and the
easiest about 1. The plan reads only the scores written in the output and orders masks
by (id, content key), so every process computes the same plan, and a resumed run too.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..gis.files import write_text
from . import writers

Item = tuple[str, str]
"""A mask: (id, content key)."""


def allocate(scores: dict[Item, float], per_item: int) -> dict[Item, int]:
    """Images per mask (per layout): ``per_item × len(scores)`` in all, each at least 1, the extra ones shared
    in proportion to the hardness rank (ties share their mean rank; leftovers by largest remainder, the
    harder mask first, then by id). Deterministic in ``scores`` alone."""
    if not scores:
        return {}
    items = sorted(scores, key=lambda k: (-scores[k], k))  # easiest first
    ranks: dict[Item, float] = {}
    start = 0
    while start < len(items):  # a run of equal scores shares its mean rank
        end = start
        while end + 1 < len(items) and scores[items[end + 1]] == scores[items[start]]:
            end += 1
        for k in items[start : end + 1]:
            ranks[k] = (start + end) / 2 + 1
        start = end + 1
    extra = (per_item - 1) * len(items)
    total = sum(ranks.values())
    quotas = {k: extra * ranks[k] / total for k in items}
    counts = {k: 1 + int(quotas[k]) for k in items}
    left = len(items) * per_item - sum(counts.values())
    for k in sorted(items, key=lambda k: (-(quotas[k] - int(quotas[k])), scores[k], k))[:left]:
        counts[k] += 1
    return counts


def phase_scores(out: Path, fmt: str, items: set[Item]) -> dict[Item, float]:
    """The mean score of each mask's image 0 (over its layouts), read from the output and the drop journal."""
    rows = writers.read_dropped(out)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for path in sorted((out / writers.DATA).glob("*.parquet")):
            rows += pq.read_table(path, columns=["source", "source_key", "index", "score"]).to_pylist()
    else:
        rows += writers.read_journals(out)
    found: dict[Item, list[float]] = {}
    for r in rows:
        if int(r["index"]) == 0 and (r["source"], r["source_key"]) in items and r.get("score") is not None:
            found.setdefault((r["source"], r["source_key"]), []).append(float(r["score"]))
    return {k: sum(v) / len(v) for k, v in found.items()}


def share_seen(out: Path, process_index: int, seen: list[Item]) -> None:
    """This process's masks after the first pass, for every process to plan over all of them."""
    write_text(out / writers.STATE / f"phase1-{process_index:03d}.json", json.dumps(seen))


def all_seen(out: Path) -> set[Item]:
    return {tuple(k) for path in sorted((out / writers.STATE).glob("phase1-*.json"))
            for k in json.loads(path.read_text(encoding="utf-8"))}
