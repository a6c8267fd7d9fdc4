"""``python -m tuning.report EXPERIMENT_DIR [--out DIR]``: see :mod:`tuning.report.render`."""

import sys

from tuning.report.render import main

if __name__ == "__main__":
    sys.exit(main())
