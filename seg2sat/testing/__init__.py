"""Builders for tests, benchmarks and demos, kept apart from the product code.

- :mod:`.tiny`: a tiny random-weights SD 2.1 + ControlNet pipeline (``seg2sat make-tiny DIR``).
- :mod:`.realsize`: the same at SD 2.1 base's real size (``python -m seg2sat.realsize DIR``).
- :mod:`.figures`: contact sheets (tiles side by side, captions under them) for the examples and README figures.
- :mod:`.segformer`: a tiny random-weights SegFormer for the FLAIR classes (``--filter-with`` and the proof example).
- :mod:`.village`: a synthetic village map with its hand-worked expected classes, for the OSM rasterizer.

Nothing in the product imports this package except ``seg2sat make-tiny``.
"""
