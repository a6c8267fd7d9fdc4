"""``python -m tuning.report EXPERIMENT_DIR [--out DIR]``: see :mod:`tuning.report.write`."""

import sys

from tuning.report.write import main

if __name__ == "__main__":
    sys.exit(main())
