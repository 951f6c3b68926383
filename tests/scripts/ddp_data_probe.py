"""Run under real DDP (2 CPU processes, gloo): record which examples each rank sees.

Usage: python ddp_data_probe.py DATA_DIR OUT_DIR. Writes OUT_DIR/rank{r}.json.
"""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from idx_files import FILES, tiny_datamodule_class

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback
from lth_lightning.data.download import file_md5


def example_ids(x: torch.Tensor) -> list[int]:
    pixels = (x[:, 0, 0, :2] * 255).round().long()
    return (pixels[:, 0] * 256 + pixels[:, 1]).tolist()


class Recorder(pl.Callback):
    def __init__(self) -> None:
        self.seen: dict[str, list[list[int]]] = {"train": [], "val": [], "test": []}

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen["train"].append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen["train"][-1].extend(example_ids(batch[0]))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.seen["val"].extend(example_ids(batch[0]))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["test"].extend(example_ids(batch[0]))


def main() -> None:
    data_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    raw = data_dir / "FashionMNIST" / "raw"
    md5s = {name + ".gz": file_md5(raw / (name + ".gz")) for name in FILES}
    dm = tiny_datamodule_class(md5s)(data_dir=data_dir, val_size=37, batch_size=16, eval_batch_size=10)
    torch.manual_seed(0)
    model = LotteryClassifier(net=MLP((784, 16, 10)), lr=1e-3)
    recorder = Recorder()
    lottery = LotteryTicketCallback(amount=0.5, verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[lottery, recorder],
    )
    trainer.fit(model, datamodule=dm)
    val_acc = float(trainer.callback_metrics["val/acc"])
    result = trainer.test(model, datamodule=dm, verbose=False)[0]
    x, y = dm.split("test")
    with torch.no_grad():
        hand = float((model(x.cpu()).argmax(1) == y.cpu()).float().mean())
    out = {
        "rank": trainer.global_rank,
        "seen": recorder.seen,
        "test_acc": result["test/acc"],
        "hand_test_acc": hand,
        "val_acc": val_acc,
        "masks_sum": {k: int(v.sum()) for k, v in lottery.masks.items()},
        "masks_hash": float(
            sum((v.float() * torch.arange(v.numel()).reshape(v.shape)).sum() for v in lottery.masks.values())
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
