"""Multi-scale sizes: a pure function of (seed, k // period), identical across DDP ranks and worker counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from yolo9000.data import (
    DetectionCollate,
    DetectionDataset,
    DetectionRecord,
    DetectionTransform,
    MultiScaleBatchSampler,
    resolve_sizes,
    size_for_batch,
)

SIZES = list(range(320, 609, 32))


def test_resolve_sizes():
    assert resolve_sizes() == SIZES  # darknet: 320..608 step 32
    assert resolve_sizes(None, 192, 320, 32) == [192, 224, 256, 288, 320]
    assert resolve_sizes([416, 320]) == [416, 320]
    with pytest.raises(ValueError):
        resolve_sizes([300])


def test_size_is_pure_function_of_seed_and_period_block():
    ks = range(0, 2000)
    sizes = [size_for_batch(7, k, SIZES, 10) for k in ks]
    assert sizes == [size_for_batch(7, k, SIZES, 10) for k in ks]  # deterministic
    assert set(sizes) <= set(SIZES) and set(sizes) == set(SIZES)  # in the set, covers it
    blocks = np.asarray(sizes).reshape(-1, 10)
    assert (blocks == blocks[:, :1]).all()  # constant within a period
    assert (blocks[1:, 0] != blocks[:-1, 0]).mean() > 0.8  # changes across periods (~9/10 of the time)
    assert size_for_batch(7, 123, SIZES, 10) == size_for_batch(7, 120, SIZES, 10) == size_for_batch(7, 129, SIZES)
    assert [size_for_batch(8, k, SIZES) for k in ks] != sizes  # the seed matters
    assert size_for_batch(7, 45, SIZES, period=5) == size_for_batch(7, 9 * 10, SIZES, period=10)


class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _sizes(bs) -> list[int]:
    out = []
    for batch in bs:
        assert len({s for _, s, _ in batch}) == 1
        out.append(batch[0][1])
    return out


def test_sampler_counts_batches_across_epochs():
    bs = MultiScaleBatchSampler(SequentialSampler(range(95)), 4, False, SIZES, period=10, seed=3)
    assert len(bs) == 24
    for epoch in range(3):
        bs.set_epoch(epoch)
        assert _sizes(bs) == [size_for_batch(3, epoch * 24 + i, SIZES, 10) for i in range(24)]
    batches = list(bs)
    assert [len(b) for b in batches] == [4] * 23 + [3]
    assert [i for b in batches for i, *_ in b] == list(range(95))
    assert len(MultiScaleBatchSampler(SequentialSampler(range(95)), 4, True, SIZES)) == 23


def test_disabled_fixed_and_final_size():
    bs = MultiScaleBatchSampler(SequentialSampler(range(40)), 2, False, SIZES, enabled=False, fixed_size=416)
    assert set(_sizes(bs)) == {416}
    with pytest.raises(ValueError):
        MultiScaleBatchSampler(SequentialSampler(range(40)), 2, False, SIZES, enabled=False)
    bs = MultiScaleBatchSampler(SequentialSampler(range(40)), 2, False, SIZES, seed=1, final_size_after=25)
    bs.set_epoch(1)  # global batches 20..39
    got = _sizes(bs)
    assert got[5:] == [608] * 15 and got[:5] == [size_for_batch(1, k, SIZES) for k in range(20, 25)]


def test_identical_sizes_on_two_ddp_ranks():
    ds = _Sized(101)
    ranks = []
    for rank in (0, 1):
        # built independently, as on two processes
        base = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        ranks.append(MultiScaleBatchSampler(base, 8, False, SIZES, period=10, seed=5))
    per_epoch = []
    for epoch in range(3):
        for bs in ranks:
            bs.set_epoch(epoch)
        b0, b1 = list(ranks[0]), list(ranks[1])
        assert [b[0][1] for b in b0] == [b[0][1] for b in b1]
        i0, i1 = [i for b in b0 for i, *_ in b], [i for b in b1 for i, *_ in b]
        assert len(i0) == len(i1) == 51 and set(i0) | set(i1) == set(range(101))  # shards (1 padded index)
        per_epoch.append([i for b in b0 for i, *_ in b])
    assert per_epoch[0] != per_epoch[1]  # set_epoch reached the DistributedSampler: new shuffle


def test_lightning_set_epoch_reaches_the_batch_sampler():
    from lightning_fabric.utilities.data import _set_sampler_epoch

    base = DistributedSampler(_Sized(30), num_replicas=1, rank=0, shuffle=True, seed=0)
    bs = MultiScaleBatchSampler(base, 4, False, SIZES, seed=0)
    loader = DataLoader(range(30), batch_sampler=bs)
    _set_sampler_epoch(loader, 4)  # what Lightning's fit loop calls at each epoch start
    assert bs.epoch == 4 and base.epoch == 4
    assert bs.state_dict() == {"epoch": 4}
    bs2 = MultiScaleBatchSampler(DistributedSampler(_Sized(30), 1, 0, seed=0), 4, False, SIZES, seed=0)
    bs2.load_state_dict(bs.state_dict())
    assert list(bs2) == list(bs)


def _tiny_dataset(tmp_path: Path, n: int = 24) -> DetectionDataset:
    recs = []
    for k in range(n):
        p = tmp_path / f"im{k}.png"
        Image.new("RGB", (48 + k, 40), (k * 5, 100, 200)).save(p)
        recs.append(DetectionRecord(p, p.stem, 48 + k, 40, [[4, 4, 30, 30]], [k % 3], [False]))
    return DetectionDataset(recs, DetectionTransform(train=True, augment={"jitter": 0.1}), default_size=64)


def test_same_sizes_with_0_and_2_workers(tmp_path):
    ds = _tiny_dataset(tmp_path)
    sizes = [64, 96, 128]
    seen = []
    for workers in (0, 2):
        bs = MultiScaleBatchSampler(SequentialSampler(ds), 2, False, sizes, period=2, seed=11)
        loader = DataLoader(ds, batch_sampler=bs, num_workers=workers, collate_fn=DetectionCollate())
        got = []
        for epoch in range(2):
            bs.set_epoch(epoch)
            got += [(b["images"].shape[-1], tuple(b["image_ids"])) for b in loader]
        seen.append(got)
    assert seen[0] == seen[1]
    assert [s for s, _ in seen[0]] == [size_for_batch(11, k, sizes, 2) for k in range(24)]
    assert ds.stats()["loaded"] == 2 * 2 * 24  # counted in the workers, visible here


def _yolo_datamodule(root: Path, images: int, seed: int, **kwargs: Any) -> Any:
    """A DetectionDataModule (batch 2, no worker, sizes 64 / 96 switching every batch from ``seed``) over ``images``
    black 50 x 40 photos in a YOLO-txt folder under ``root``, each with one box (12.5, 10, 37.5, 30) px; set up."""
    from yolo9000.data import DetectionDataModule, YOLOTxtParser

    (root / "images").mkdir()
    (root / "labels").mkdir()
    for k in range(images):
        Image.new("RGB", (50, 40)).save(root / "images" / f"{k}.jpg")
        (root / "labels" / f"{k}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    spec = YOLOTxtParser(root, split=None)
    multiscale = {"sizes": [64, 96], "period": 1, "seed": seed}
    dm = DetectionDataModule(
        train=spec,
        val=spec,
        class_names=["a"],
        batch_size=2,
        num_workers=0,
        img_size=64,
        multiscale=multiscale,
        **kwargs,
    )
    dm.setup("fit")
    return dm


def test_datamodule_train_loader_uses_multiscale(tmp_path):
    dm = _yolo_datamodule(tmp_path, 10, seed=2)
    got = [b["images"].shape[-1] for b in dm.train_dataloader()]
    assert got == [size_for_batch(2, k, [64, 96], 1) for k in range(5)]
    assert {b["images"].shape[-1] for b in dm.val_dataloader()} == {64}
    dm.load_state_dict({"epoch": 2})
    got = [b["images"].shape[-1] for b in dm.train_dataloader()]
    assert got == [size_for_batch(2, k, [64, 96], 1) for k in range(10, 15)]


def test_lightning_fit_drives_the_epoch(tmp_path):
    """A real Trainer: epoch e uses the sizes of global batches e * len + i (set_epoch via Lightning)."""
    import pytorch_lightning as pl
    import torch

    from yolo9000.data import DetectionDataModule, YOLOTxtParser

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for k in range(8):
        Image.new("RGB", (50, 40)).save(tmp_path / "images" / f"{k}.jpg")
        (tmp_path / "labels" / f"{k}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    spec = YOLOTxtParser(tmp_path, split=None)
    dm = DetectionDataModule(
        train=spec,
        val=spec,
        class_names=["a"],
        batch_size=2,
        num_workers=0,
        img_size=64,
        multiscale={"sizes": [64, 96, 128], "period": 1, "seed": 9},
    )

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[tuple[int, int]] = []

        def training_step(self, batch, i):
            self.seen.append((self.current_epoch, batch["images"].shape[-1]))
            return (self.w * batch["images"].float().mean()).sum()

        def validation_step(self, batch, i):
            assert batch["images"].shape[-1] == 64

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    probe = Probe()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(probe, datamodule=dm)
    expected = [(e, size_for_batch(9, e * 4 + i, [64, 96, 128], 1)) for e in range(3) for i in range(4)]
    assert probe.seen == expected
    state = dm.state_dict()
    assert (state["epoch"], state["batch"]) == (3, 0)  # after 3 epochs, the next batch is epoch 3's first
    assert state["stats"]["train"]["loaded"] == 24  # 8 images x 3 epochs (the counters a resumed run carries on)


def test_final_phase_runs_the_last_batches_at_the_largest_size() -> None:
    """``multiscale.final_batches``: darknet's last iterations at the largest size, from the trainer's length."""
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from conftest import data_config

    cfg = data_config("bccd")
    cfg.data.update({"num_workers": 0, "batch_size": 2, "max_images": 8})
    cfg.data.multiscale.final_batches = 3
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert dm.train_batch_sampler().final_size_after is None  # no trainer: no run length, no final phase
    dm.trainer = SimpleNamespace(max_epochs=2, max_steps=-1, world_size=1, global_rank=0)
    bs = dm.train_batch_sampler()  # 4 batches an epoch, 8 in the run: batches 5, 6, 7 at 320
    assert bs.final_size_after == 5
    sizes = [bs.size_at(k) for k in range(8)]
    assert sizes[5:] == [320] * 3 and set(sizes[:5]) <= set(dm.sizes)
    assert sizes[:5] != [320] * 5  # multi-scale before the final phase
    dm.trainer = SimpleNamespace(max_epochs=2, max_steps=6, world_size=1, global_rank=0)  # max_steps wins over epochs
    assert dm.train_batch_sampler().final_size_after == 3
    cfg.data.multiscale.enabled = False  # darknet's random=0: one size, no final phase (it logged one at 608)
    fixed = instantiate(cfg.data)
    fixed.setup("fit")
    fixed.trainer = dm.trainer
    bs = fixed.train_batch_sampler()
    assert bs.final_size_after is None and {bs.size_at(k) for k in range(6)} == {fixed.img_size}


def test_the_placement_runs_through_the_multiscale_loader(tmp_path: Path) -> None:
    """``augment.jitter_mode=place`` through the DataModule: every training batch at its multi-scale size holds each
    image's truth where the sample's placement put it (the label's box of the 50 x 40 image mapped by the batch's
    ``transforms``: scale nw / W, nh / H, pad dx, dy), and the grey canvas beside the black image."""
    import torch
    from torchvision.ops import box_convert

    augment = {"jitter_mode": "place", "flip": 0.0, "hue": 0.0, "saturation": 1.0, "exposure": 1.0}
    dm = _yolo_datamodule(tmp_path, 6, seed=3, augment=augment)
    sizes = set()
    for b in dm.train_dataloader():
        s = b["images"].shape[-1]
        sizes.add(s)
        sx, sy, px, py = b["transforms"].unbind(1)
        want = torch.stack([12.5 * sx + px, 10 * sy + py, 37.5 * sx + px, 30 * sy + py], 1)
        got = box_convert(b["targets"][:, 0, :4] * s, "cxcywh", "xyxy")
        torch.testing.assert_close(got, want, atol=1e-3, rtol=0)
        grey = (b["images"] == 127).all(1).float().mean((1, 2))  # the canvas's share of each image
        assert ((grey > 0.05) & (grey < 0.6)).all()  # the seeded draws here: aspect ratios away from 1, some grey
    assert sizes == {64, 96}
