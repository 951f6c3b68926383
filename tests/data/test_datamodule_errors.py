"""A DataModule's data folder without the data: a clear error, nothing created."""

from __future__ import annotations

import pytest
from conftest import lean_trainer

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier

TOTAL = 784 * 32 + 32 * 16 + 16 * 10


def test_empty_data_folder_is_a_clear_error(tmp_path):
    (tmp_path / "FashionMNIST" / "raw").mkdir(parents=True)
    dm = FashionMNISTDataModule(tmp_path)
    model = LotteryClassifier(net=MLP((784, 10)))
    with pytest.raises(Exception, match="FashionMNIST file train-images-idx3-ubyte.gz not found in"):
        lean_trainer(tmp_path).fit(model, datamodule=dm)
