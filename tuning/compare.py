"""``python -m tuning.compare EXPERIMENT_DIR --problem {1,2}``: the command; the code is
:mod:`tuning.homework.compare`."""

import sys

from tuning.homework.compare import main

if __name__ == "__main__":
    sys.exit(main())
