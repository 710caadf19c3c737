"""Trainer overhead: steps/s of ``scoresde.train.Trainer`` vs a bare hand-written torch loop.

Both run the same work per step on the same model, data and batch: draw a batch of the toy,
draw t ~ U(eps, T) and z, form x_t = alpha x0 + sigma z, the epsilon-prediction loss, backward,
global grad-norm clipping, AdamW, the LR schedule and the EMA update. The trainer adds what a
user gets on top (loss accumulation, the per-step NaN/inf check of the loss and gradient norm,
the signal handlers, periodic logging and metrics file, progress bar, DDP hooks when
distributed). Target: ratio >= 0.95 (the exit status is 1 below it). Rounds alternate
bare/trainer so that load on a shared machine hits both alike; medians are reported, in
wall-clock and in process CPU time.

    python benchmarks/train_throughput.py                # MLP toy recipe, 1 thread
    python benchmarks/train_throughput.py --model unet   # small digits U-Net
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from scoresde.train import TrainConfig, Trainer, digits_config, lr_factor, make_data, toy_config
from solvers.utils import append_dims


def bare_loop(config: TrainConfig, data: Any, steps: int, state: dict[str, Any]) -> None:
    """The hand-written reference loop (same math as the trainer, nothing else)."""
    model, opt, sched, ema_p, src_p, g, sde = (state[k] for k in ("model", "opt", "sched", "ema", "src", "g", "sde"))
    o = config.optim
    for _ in range(steps):
        x0 = data.sample(config.batch_size, generator=g).to(torch.float32)
        t = sde.eps + (sde.T - sde.eps) * torch.rand(x0.shape[0], generator=g)
        z = torch.randn(x0.shape, generator=g)
        alpha, sigma = sde.marginal_coeffs(t)
        x_t = append_dims(alpha, x0.ndim) * x0 + append_dims(sigma, x0.ndim) * z
        loss = (model(x_t, t, sde, "eps") - z).pow(2).reshape(x0.shape[0], -1).mean(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(src_p, o.grad_clip, foreach=True)
        opt.step()
        sched.step()
        n = state["n"]
        d = min(o.ema_decay, (1 + n) / (10 + n))
        with torch.no_grad():
            torch._foreach_lerp_(ema_p, src_p, 1 - d)
        state["n"] = n + 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("mlp", "unet"), default="mlp")
    p.add_argument("--steps", type=int, default=300, help="steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action="store_true", help="show the trainer's progress bar (stderr)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    if args.model == "mlp":
        config = toy_config("eight_gaussians")
    else:
        config = digits_config()
        config.model.net.update(channels=16, groups=8)
        config.batch_size = 32
    config.steps = args.steps * (args.rounds + 1)
    config.ckpt_every, config.device, config.log_every = 0, "cpu", 100
    data = make_data(config.data)

    trainer = Trainer(config, data=data, progress=args.progress)
    sde = trainer.sde
    model = config.model.build(seed=config.seed)
    src = [q for q in model.parameters()]
    ema = [q.detach().clone() for q in src]
    opt = torch.optim.AdamW(src, lr=config.optim.lr, betas=config.optim.betas,
                            weight_decay=config.optim.weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(config.optim, s))
    state = {"model": model, "opt": opt, "sched": sched, "ema": ema, "src": src,
             "g": torch.Generator().manual_seed(0), "sde": sde, "n": 0}

    # Warm-up round for both (allocator, first-call overheads), not timed.
    bare_loop(config, data, args.steps // 3, state)
    trainer.fit(until=args.steps // 3)
    wall: dict[str, list[float]] = {"bare": [], "trainer": []}
    cpu: dict[str, list[float]] = {"bare": [], "trainer": []}
    for _ in range(args.rounds):
        for which in ("bare", "trainer"):
            w0, c0 = time.perf_counter(), time.process_time()
            if which == "bare":
                bare_loop(config, data, args.steps, state)
            else:
                trainer.fit(until=trainer.step + args.steps)
            wall[which].append(args.steps / (time.perf_counter() - w0))
            cpu[which].append(args.steps / (time.process_time() - c0))
    res = {
        "model": args.model,
        "parameters": trainer.model.num_parameters(),
        "batch_size": config.batch_size,
        "threads": args.threads,
        "bare_steps_per_s": statistics.median(wall["bare"]),
        "trainer_steps_per_s": statistics.median(wall["trainer"]),
        "ratio_wall": statistics.median(t / b for t, b in zip(wall["trainer"], wall["bare"], strict=True)),
        "ratio_cpu": statistics.median(t / b for t, b in zip(cpu["trainer"], cpu["bare"], strict=True)),
        "rounds_wall": wall,
    }
    print(f"{args.model}: {res['parameters']:,} parameters, batch {config.batch_size}, {args.threads} thread(s)")
    print(f"  bare loop : {res['bare_steps_per_s']:8.1f} steps/s")
    print(f"  trainer   : {res['trainer_steps_per_s']:8.1f} steps/s")
    print(f"  ratio     : {res['ratio_wall']:.3f} (wall, median of per-round ratios), "
          f"{res['ratio_cpu']:.3f} (CPU time)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0 if res["ratio_wall"] >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
