"""A run of three rounds that pauses when its second round starts training: a process holding its run folder.

Usage: python hold_run.py DATA_DIR OUT_DIR MARKER (with tests/ on PYTHONPATH)
"""

import sys
from pathlib import Path

from cli_helpers import PauseAt, unsaved_run


def main() -> None:
    data_dir, out_dir, marker = map(Path, sys.argv[1:4])
    unsaved_run(data_dir, out_dir, rounds=3, callbacks=[PauseAt(1, str(marker))])


if __name__ == "__main__":
    main()
