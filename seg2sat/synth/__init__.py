"""``seg2sat synthesize``: land-cover masks in, a segmentation-ready synthetic dataset out.

One concern per module: :mod:`.sources` reads masks (a folder, a prepared dataset, any
Hugging Face dataset), :mod:`.seeds` derives each row's seed and style, :mod:`.layouts`
the label-preserving layouts of ``--augment``, :mod:`.writers` the output formats
(Parquet shards + dataset card, FLAIR-named PNG pairs, GeoTIFF pairs), :mod:`.filter` the
``--filter-with`` model that scores images and writes ignore masks, :mod:`.hardness` the
``--hard-first`` plan, :mod:`.run` the resumable loop shared out over accelerate's processes,
:mod:`.cli` the command.
"""
