"""Session 38: trainer.fit of the default model (multi-scale off) for 40 steps, no bare steps in between: img/s with
data.num_workers=<argv 1> and PRIO=nice19 for its workers at nice 19 (runs of their own, alternating)."""
import os, sys, time, statistics
sys.path.insert(0, "/work/main/src")
import torch
from hydra import compose, initialize_config_dir
import logging; logging.disable(logging.WARNING)
import warnings; warnings.filterwarnings("ignore")
from yolo9000.multirun import register_resolvers; register_resolvers()
import yolo9000.data.sharded as sh
prio = os.environ.get("PRIO", "none")
orig = sh.worker_init
def worker_init(worker_id):
    orig(worker_id)
    if prio == "nice19": os.nice(19)
sh.worker_init = worker_init
from yolo9000.build import build
import pytorch_lightning as pl
w = int(sys.argv[1])
with initialize_config_dir("/work/main/conf", version_base="1.3"):
    cfg = compose("train", overrides=["paths.root_dir=/work/main", "data.multiscale.enabled=false", f"data.num_workers={w}"])
built = build(cfg)
class T(pl.Callback):
    def __init__(self): self.t = []; self.last = None
    def on_train_batch_end(self, *a):
        now = time.perf_counter()
        if self.last is not None: self.t.append(now - self.last)
        self.last = now
cb = T()
trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=40, limit_val_batches=0, num_sanity_val_steps=0,
    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
trainer.fit(built.module, datamodule=built.datamodule)
ts = cb.t[3:]
print(f"prio={prio} w={w}: median step {1e3*statistics.median(ts):.1f} ms  mean {1e3*statistics.mean(ts):.1f} ms  img/s {16/statistics.mean(ts):.2f}")
