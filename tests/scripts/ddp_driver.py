"""run_lottery under real DDP (2 CPU processes, gloo), launched as a plain script.

Usage: python ddp_driver.py DATA_DIR OUT_DIR PROBE_DIR
"""

import sys

import lightning.pytorch as pl
from cli_helpers import RankProbe

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery


def main() -> None:
    data_dir, out_dir, probe_dir = sys.argv[1:4]
    pl.seed_everything(0)
    dm = FashionMNISTDataModule(data_dir, batch_size=32, val_size=60)
    model = LotteryClassifier(net=MLP((784, 32, 16, 10)), lr=0.01)
    trainer = {
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp",
        "max_epochs": 2,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [RankProbe(probe_dir)],
    }
    run_lottery(
        model,
        dm,
        rounds=2,
        lottery=LotteryTicketCallback(amount=0.5),
        trainer=trainer,
        out_dir=out_dir,
        name="ddp",
        progress=False,
        controls=["snip", "synflow"],
        instability=True,
    )


if __name__ == "__main__":
    main()
