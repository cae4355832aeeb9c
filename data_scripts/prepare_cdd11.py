"""Where to download CDD-11, then arrange (`--src DOWNLOAD --out ROOT`) and check (`--check ROOT`) it."""

import sys

from m2restore.data.scripts import prepare_cdd11_main as main

if __name__ == "__main__":
    sys.exit(main())
