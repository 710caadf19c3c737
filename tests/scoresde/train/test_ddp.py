"""Two CPU processes under torchrun (gloo): no code change, ranks stay in sync, one checkpoint.

The worker uses the public Trainer exactly as a single-process script would; ``torchrun
--standalone`` picks a free port on 127.0.0.1. One launch checks three things: the ranks'
weights are identical after training, only rank 0 writes (exactly one checkpoint file), and
a run interrupted at step 3 and resumed equals the uninterrupted run bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from scoresde.losses import LossConfig
from scoresde.models import ModelConfig
from scoresde.train import OptimConfig, TrainConfig, load_checkpoint, load_model

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    import scoresde.train.persist as trainer_mod
    from scoresde.train import TrainConfig, Trainer

    saves = []
    real_save = trainer_mod.save_checkpoint
    def counting_save(state, path):
        saves.append(str(path))
        return real_save(state, path)
    trainer_mod.save_checkpoint = counting_save

    cfg = TrainConfig.from_json(Path(sys.argv[1]))
    root = Path(sys.argv[2])

    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    full = Trainer(cfg, out_dir=root / "full", progress=False)
    full.fit()
    part = Trainer(cfg, out_dir=root / "part", progress=False)
    part.fit(until=4)                       # checkpoint at 3, step 4 lost
    resumed = Trainer(cfg, out_dir=root / "part", resume=True, progress=False)
    start = resumed.step
    resumed.fit()
    rank = full.dist.rank
    torch.save({"world": full.dist.world_size, "rank": rank, "saves": saves, "start": start,
                "full": flat(full.model), "full_ema": flat(full.ema.model),
                "resumed": flat(resumed.model), "resumed_ema": flat(resumed.ema.model)},
               root / f"rank{rank}.pt")
    for trainer in (part, resumed, full):  # full owns the process group: closed last
        trainer.close()
    """
)


def test_two_processes_stay_in_sync_and_write_one_checkpoint(tmp_path: Path) -> None:
    cfg = TrainConfig(
        data="eight_gaussians", steps=6, batch_size=32, log_every=2, ckpt_every=3, device="cpu",
        model=ModelConfig(net={"width": 16, "depth": 1}),
        loss=LossConfig(weighting="likelihood", importance=True),
        optim=OptimConfig(warmup_steps=2, ema_decay=0.9),
    )
    cfg.to_json(tmp_path / "config.json")
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
         "--nproc_per_node=2", str(tmp_path / "worker.py"), str(tmp_path / "config.json"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert (r0["world"], r1["world"]) == (2, 2) and (r0["rank"], r1["rank"]) == (0, 1)
    for key in ("full", "full_ema", "resumed", "resumed_ema"):
        assert torch.equal(r0[key], r1[key]), key  # gradients are all-reduced: identical weights
    # Resuming under DDP continues every rank's random stream exactly.
    assert r0["start"] == 3
    assert torch.equal(r0["full"], r0["resumed"]) and torch.equal(r0["full_ema"], r0["resumed_ema"])
    # Only rank 0 writes; one checkpoint file per run directory, no stray temp files.
    assert r1["saves"] == [] and len(r0["saves"]) == 2 + 1 + 1  # full: 3, 6; part: 3; resumed: 6
    for run in ("full", "part"):
        assert sorted(p.name for p in (tmp_path / run).iterdir()) == [
            "checkpoint.pt", "checkpoints", "config.json", "metrics.jsonl"]
    state = load_checkpoint(tmp_path / "full")
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 6
    for ema, key in ((False, "full"), (True, "full_ema")):
        model, _, _ = load_model(tmp_path / "full", ema=ema)
        assert torch.equal(torch.cat([p.flatten() for p in model.parameters()]), r0[key])
