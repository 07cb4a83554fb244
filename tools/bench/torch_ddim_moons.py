#!/usr/bin/python3
"""The flagship recipe (experiments/ddim_moons.yaml) in PyTorch: the baseline of bench_train_step
and bench_scaling, run through torch_runner.py.

What each training step does, as runexp's does: a fresh batch of two moons (noise 0.05, scaled by
fixed constants), DDPM eps-prediction loss (T = 1000, linear betas 1e-4..0.02) of the MLP
[x (2), sinusoidal t-embedding (32)] -> 3 x WIDTH SiLU -> 2, Adam with a cosine learning-rate
decay, and (with --ema) the EMA of the weights with its warm-up, min(ema, (1 + n) / (10 + n)).
Sampling: DDIM, eta = 0, --ddim-steps evenly spaced steps, from the EMA weights when there are any.
Prints one JSON line: training steps/s, DDIM samples/s, the final loss and the samples' mean and
std (a sanity check: the moons' are about (0.5, 0.25) and (0.87, 0.50)).

    /usr/bin/python3 torch_ddim_moons.py --steps 3000 --threads 1 --ema 0.9995

Needs Debian's python3-torch.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "baselines"))
from torch_threads import set_threads  # noqa: E402  (PyTorch's threads and OpenBLAS's)

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--width", type=int, default=128)
parser.add_argument("--n", type=int, default=2000, help="samples drawn with DDIM")
parser.add_argument("--ddim-steps", type=int, default=50)
parser.add_argument("--ema", type=float, default=0.0, help="EMA decay; 0: no EMA")
parser.add_argument("--lr", type=float, default=8e-3)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
torch.manual_seed(args.seed)
set_threads(args.threads)

T = 1000
betas = torch.linspace(1e-4, 0.02, T)
alpha_bar = torch.cumprod(1.0 - betas, 0)
# Two moons' mean and standard deviation per coordinate (noise 0.05): the data's fixed scaling.
MOONS_MEAN = torch.tensor([0.5, 0.25])
MOONS_STD = torch.tensor([0.87, 0.50])


def moons(n):
    """n points of two moons with Gaussian noise 0.05, half on each moon, scaled."""
    upper = torch.rand(n) < 0.5
    angle = torch.rand(n) * math.pi
    x = torch.where(upper, torch.cos(angle), 1.0 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x, y], 1) + 0.05 * torch.randn(n, 2)
    return (points - MOONS_MEAN) / MOONS_STD


def time_embedding(t, dim=32):
    """Transformer sinusoidal embedding of integer times: sin and cos of t / 10000^(k / half)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    angle = t.float()[:, None] * freq[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], 1)


class EpsNet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 + 32, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 2))

    def forward(self, x, t):
        return self.layers(torch.cat([x, time_embedding(t)], 1))


net = EpsNet(args.width)
ema = copy.deepcopy(net) if args.ema > 0 else net
optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)

start = time.perf_counter()
for step in range(args.steps):
    for group in optimizer.param_groups:  # cosine decay from lr to 0 over the run
        group["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * step / args.steps))
    x0 = moons(args.batch)
    t = torch.randint(0, T, (args.batch,))
    eps = torch.randn_like(x0)
    ab = alpha_bar[t][:, None]
    x_t = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps
    loss = ((net(x_t, t) - eps) ** 2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if args.ema > 0:
        decay = min(args.ema, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for average, weight in zip(ema.parameters(), net.parameters()):
                average.lerp_(weight, 1.0 - decay)
train_seconds = time.perf_counter() - start


@torch.no_grad()
def ddim(n, steps):
    """DDIM with eta = 0 (Song et al. 2021, eq. 12) on evenly spaced times from T - 1 to 0."""
    times = torch.linspace(T - 1, 0, steps).long()
    x = torch.randn(n, 2)
    for i, t in enumerate(times):
        ab = alpha_bar[t]
        ab_next = alpha_bar[times[i + 1]] if i + 1 < steps else torch.tensor(1.0)
        eps_hat = ema(x, t.repeat(n))
        x0_hat = (x - (1.0 - ab).sqrt() * eps_hat) / ab.sqrt()
        x = ab_next.sqrt() * x0_hat + (1.0 - ab_next).sqrt() * eps_hat
    return x


start = time.perf_counter()
samples = ddim(args.n, args.ddim_steps) * MOONS_STD + MOONS_MEAN
sample_seconds = time.perf_counter() - start

print(json.dumps(dict(
    impl="pytorch-" + torch.__version__, threads=args.threads, steps=args.steps, batch=args.batch,
    width=args.width, ema=args.ema, train_s=round(train_seconds, 4),
    steps_per_s=round(args.steps / train_seconds, 1), ddim_steps=args.ddim_steps, n=args.n,
    samples_per_s=round(args.n / sample_seconds, 1), final_loss=round(float(loss), 5),
    sample_mean=[round(v, 4) for v in samples.mean(0).tolist()],
    sample_std=[round(v, 4) for v in samples.std(0).tolist()])))
