"""A two-round run_lottery and an export of its last round, as a plain script.

Usage: python small_run.py DATA_DIR OUT_DIR
"""

import sys
from pathlib import Path

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, export_ticket, run_lottery


def main() -> None:
    data_dir, out_dir = sys.argv[1:3]
    rows = run_lottery(
        LotteryClassifier(net=MLP((784, 16, 10)), lr=0.01),
        FashionMNISTDataModule(data_dir, batch_size=32, val_size=60),
        rounds=2,
        trainer={"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
        out_dir=out_dir,
        progress=False,
        keep_checkpoints=True,
    )
    export_ticket(rows.run_dir, "last", Path(out_dir) / "export" / "ticket.pt")


if __name__ == "__main__":
    main()
