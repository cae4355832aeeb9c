"""Build a mini AllWeather offline: `python data_scripts/make_mini_allweather.py --out data/mini-allweather [--clean-dir DIR] [--size N] [--seed S]`."""

import sys

from m2restore.data.scripts import make_mini_allweather_main as main

if __name__ == "__main__":
    sys.exit(main())
