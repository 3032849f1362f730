"""PyInstaller entry script: the same entry point as the `transfer-studio` console script."""

import multiprocessing
import sys

from transfer_studio.__main__ import main

if __name__ == "__main__":
    # A frozen app started as a DataLoader worker (spawn: Windows, macOS) must run the worker, not
    # the app: freeze_support does that and returns at once otherwise.
    multiprocessing.freeze_support()
    sys.exit(main())
