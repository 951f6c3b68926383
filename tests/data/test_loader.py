"""TensorBatches and EpochShards (lth_lightning/data/loader.py): shards across ranks, with real DDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from idx_files import tiny_arrays, write_dataset

from lth_lightning import (
    EpochShards,
    TensorBatches,
)

# ----------------------------------------------------------------------------- IDX reader


def test_training_shards_are_disjoint_and_cover_the_epoch():
    n = 103
    for epoch in range(3):
        shards = []
        for rank in range(2):
            s = EpochShards(n, shuffle=True, seed=5, rank=rank, world_size=2)
            s.set_epoch(epoch)
            shards.append(s.indices())
        assert len(shards[0]) == len(shards[1]) == 51
        both = torch.cat(shards)
        assert len(set(both.tolist())) == 102  # disjoint; one example left over, a different one per epoch
    first = EpochShards(n, shuffle=True, seed=5)
    second = EpochShards(n, shuffle=True, seed=5)
    second.set_epoch(1)
    assert not torch.equal(first.indices(), second.indices())


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_eval_shards_count_every_example_once(world):
    n = 10_000
    seen = torch.cat([EpochShards(n, shuffle=False, rank=r, world_size=world).indices() for r in range(world)])
    assert torch.equal(seen, torch.arange(n))


def test_tensor_batches_over_two_ranks():
    x = torch.arange(50).float().unsqueeze(1)
    y = torch.arange(50)
    batches = [
        list(TensorBatches(x, y, 8, EpochShards(50, shuffle=True, seed=0, rank=r, world_size=2))) for r in range(2)
    ]
    assert [len(b) for b in batches] == [4, 4]  # 25 examples per rank, batches of 8: 3 full + 1
    seen = [int(v) for rank in batches for _, yb in rank for v in yb]
    assert len(seen) == 50 == len(set(seen))
    for rank in batches:
        for xb, yb in rank:
            assert torch.equal(xb.squeeze(1).long(), yb)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        TensorBatches(x, y, 0, EpochShards(50, shuffle=False))
    with pytest.raises(ValueError, match=r"`rank` must be in \[0, world_size=2\), got 2"):
        EpochShards(50, shuffle=False, rank=2, world_size=2)


@pytest.mark.slow
def test_ddp_two_processes_shard_training_and_count_eval_once(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    arrays = tiny_arrays(n_train=137, n_test=53)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        ids = np.arange(len(arrays[name]))
        arrays[name][:, 0, 0], arrays[name][:, 0, 1] = ids // 256, ids % 256  # example id in two pixels
    write_dataset(tmp_path / "data" / "FashionMNIST" / "raw", arrays)
    script = REPO / "tests" / "scripts" / "ddp_data_probe.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in range(2)]
    n_train = 137 - 37
    for epoch in range(2):
        a, b = (set(r["seen"]["train"][epoch]) for r in ranks)
        assert len(a) == len(b) == n_train // 2 and not a & b  # disjoint, equal, covering all but one
    assert ranks[0]["seen"]["train"][0] != ranks[0]["seen"]["train"][1]  # a new permutation per epoch
    test_seen = ranks[0]["seen"]["test"] + ranks[1]["seen"]["test"]
    assert sorted(test_seen) == list(range(53))  # every test example exactly once over both ranks
    val_seen = ranks[0]["seen"]["val"] + ranks[1]["seen"]["val"]
    assert len(val_seen) == 2 * 37 and len(set(val_seen)) == 37  # 2 epochs, each validation example once per epoch
    for r in ranks:
        assert r["test_acc"] == pytest.approx(r["hand_test_acc"], abs=1e-6)
    assert ranks[0]["masks_hash"] == ranks[1]["masks_hash"] and ranks[0]["masks_sum"] == ranks[1]["masks_sum"]
