#!/usr/bin/python3
"""PyTorch baseline of bench_dit_step: one DiT training step (DDPM eps loss, Adam), timed.

    torch_dit_step.py [--steps 30] [--warmup 5] [--batch 64] [--size 28] [--patch 4] [--hidden 128]
                      [--depth 4] [--heads 4] [--threads 1] [--seed 0]

The network is tools/baselines/dit_reference.py's DiT (the same architecture and parameter names
as plugins/dit), class-conditional over 10 classes, one channel, with DiT's initialisation of the
adaLN-Zero and final layers (zero). A step: a batch of size x size images (random draws: loading
data is not what is timed), labels with 10% dropped to the null label, t uniform over T = 1000
linear-beta DDPM steps, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, MSE(net(x_t, t, y), eps),
backward, Adam (lr 1e-4). Prints one JSON line.
"""
import argparse, json, os, resource, sys, time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "baselines"))
from dit_reference import DiT  # noqa: E402
from torch_threads import set_threads  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(steps=30, warmup=5, batch=64, size=28, patch=4, hidden=128, depth=4, heads=4, threads=1, seed=0).items():
        p.add_argument("--" + k, type=int, default=v)
    a = p.parse_args()
    set_threads(a.threads)
    torch.manual_seed(a.seed)
    net = DiT(channels=1, height=a.size, width=a.size, hidden=a.hidden, depth=a.depth, heads=a.heads, patch=a.patch,
              mlp_ratio=4.0, frequency_dim=256, num_classes=10)
    with torch.no_grad():  # adaLN-Zero, as plugins/dit initialises them
        for name, q in net.named_parameters():
            if "adaLN" in name or name.startswith("final.linear"):
                q.zero_()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)

    def step():
        x0 = torch.randn(a.batch, 1, a.size, a.size)
        y = torch.randint(0, 10, (a.batch,))
        null = (torch.rand(a.batch) < 0.1).to(torch.uint8)
        t = torch.randint(0, 1000, (a.batch,))
        eps = torch.randn_like(x0)
        ab = abar[t].view(-1, 1, 1, 1)
        loss = torch.nn.functional.mse_loss(net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t.float(), y, null), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    secs = time.perf_counter() - start
    print(json.dumps(dict(impl="pytorch-" + torch.__version__, threads=a.threads, steps=a.steps, batch=a.batch,
                          train_s=secs, steps_per_s=a.steps / secs, final_loss=loss,
                          parameters=sum(q.numel() for q in net.parameters()),
                          peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


if __name__ == "__main__":
    main()
