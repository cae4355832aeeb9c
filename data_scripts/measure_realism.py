"""Realism of the synthesis: `python data_scripts/measure_realism.py [--clean-dir DIR] [--pairs-dir DIR] [--speed]`."""

import sys

from m2restore.data.scripts import measure_realism_main as main

if __name__ == "__main__":
    sys.exit(main())
