"""Where to download AllWeather, then arrange (`--src DOWNLOAD --out ROOT`) and check (`--check ROOT`) it."""

import sys

from m2restore.data.scripts import prepare_allweather_main as main

if __name__ == "__main__":
    sys.exit(main())
