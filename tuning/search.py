"""``python -m tuning.search``: the search command. The driver is :mod:`tuning.tune.driver`."""

import sys

from tuning.tune.driver import main

if __name__ == "__main__":
    sys.exit(main())
