"""Data: FLAIR patches (``flair``), place names from OpenStreetMap (``geocode``) and the training dataset (``dataset``)."""
