"""Train the Seg2Sat ControlNet: ``accelerate launch [--config_file CONFIG] controlnet_training/train.py …``.

A thin entry point over :mod:`seg2sat.training` (the same program as ``seg2sat train``);
``python controlnet_training/train.py --help`` lists the options.
"""

import sys

from seg2sat.training import main

if __name__ == "__main__":
    sys.exit(main())
