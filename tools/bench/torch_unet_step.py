#!/usr/bin/python3
"""One training step of the U-Net in PyTorch, the baseline of bench_unet_step.cpp.

    torch_unet_step.py [--batch 64] [--size 28] [--channels 64] [--channel-mult 1,2,2]
                       [--num-res-blocks 2] [--attention 7] [--heads 4] [--groups 32]
                       [--dropout 0.1] [--threads 1] [--steps 5] [--warmup 1]

The network is tools/baselines/unet_reference.py's functional copy of plugins/unet (the same
layers, in float32 with trainable parameters); the step is the one bench_unet_step times: DDPM's
x_t = sqrt(abar) x0 + sqrt(1 - abar) eps at random steps of a linear schedule (1000 steps),
eps-prediction MSE, backward, Adam. Prints one JSON line.
"""
import argparse, json, math, os, resource, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "baselines"))
import unet_reference  # noqa: E402
from torch_threads import set_threads  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--channel-mult", default="1,2,2")
    ap.add_argument("--num-res-blocks", type=int, default=2)
    ap.add_argument("--attention", default="7")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--groups", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    set_threads(a.threads)
    cfg = dict(in_channels=1, height=a.size, width=a.size, channels=a.channels,
               channel_mult=[int(m) for m in a.channel_mult.split(",")], num_res_blocks=a.num_res_blocks,
               attention_resolutions=[int(r) for r in a.attention.split(",") if r], heads=a.heads,
               groups=a.groups, num_classes=0)
    gen = torch.Generator().manual_seed(0)
    net = unet_reference.UNet(cfg, gen, dropout=a.dropout)
    net.P.p = {k: v.float().requires_grad_() for k, v in net.P.p.items()}
    net.dtype, net.training = torch.float32, True
    opt = torch.optim.Adam(list(net.P.p.values()), lr=2e-4)
    betas = torch.linspace(1e-4, 0.02, 1000)
    abar = torch.cumprod(1 - betas, 0)
    x0 = torch.randn(a.batch, 1, a.size, a.size, generator=gen)

    def step():
        t = torch.randint(0, 1000, (a.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        ab = abar[t][:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        loss = F.mse_loss(net.forward(xt, t.float(), None, None), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - start
    params = sum(v.numel() for v in net.P.p.values())
    print(json.dumps({"impl": "pytorch-" + torch.__version__, "threads": a.threads, "batch": a.batch,
                      "size": a.size, "params": params, "steps": a.steps, "train_s": secs,
                      "s_per_step": secs / a.steps,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
