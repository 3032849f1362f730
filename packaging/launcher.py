"""PyInstaller entry script: the same entry point as the `transfer-studio` console script."""

import sys

from transfer_studio.__main__ import main

sys.exit(main())
