"""Build a mini CDD-11 offline: `python data_scripts/make_mini_cdd11.py --out data/mini-cdd11 [--clean-dir DIR] [--size N] [--seed S]`."""

import sys

from m2restore.data.scripts import make_mini_cdd11_main as main

if __name__ == "__main__":
    sys.exit(main())
