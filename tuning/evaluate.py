"""``python -m tuning.evaluate CHECKPOINT_DIR``: the command. The code is :mod:`tuning.engine.evaluate`."""

import sys

from tuning.engine.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
