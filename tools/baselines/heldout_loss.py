#!/usr/bin/python3
"""Held-out denoising loss of trained image networks, runexp's and the PyTorch baseline's, on the
same fixed draws: tells whether two trainings of one recipe reached equally good denoisers without
the sampling noise of fd (issue 16).

    heldout_loss.py EXPERIMENT.yaml WEIGHTS.h5 [WEIGHTS.h5 ...] [--n 2000] [--times 5] [--seed 123]
                    [--null] [--threads 2]

WEIGHTS.h5: a runexp results file (its /ema, else /model) or the output of train_images_torch.py
(its /ema after training). Every network is the experiment's, evaluated in PyTorch through
train_images_torch.py's mirror (whose forward pass the C++ tests hold to the plugins').

The draws, the same for every file: --n test images (a permutation by --seed), each at --times
noise levels t stratified over [0, T) (one t in each of n * times equal strata, shuffled), noise
z ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) z; the loss of a row is the mean squared
error of the predicted eps against z, as eps_mse trains it. Labels are the images' own (--null:
the null label, the unconditional model of classifier-free guidance).

Prints each file's mean loss with its standard error, the mean over bins of t, and, from the second
file on, the paired difference to the first with its standard error (the draws are shared, so the
difference is far less noisy than either loss).
"""
import argparse
import os
import sys

import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_images_torch as tit  # noqa: E402

T_BINS = [0, 10, 50, 100, 200, 400, 600, 800, 1000]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment")
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--n", type=int, default=2000, help="test images")
    ap.add_argument("--times", type=int, default=5, help="noise levels per image")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--null", action="store_true", help="evaluate with the null label")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tit.set_threads(a.threads)
    with open(a.experiment) as f:
        cfg = yaml.safe_load(f)
    data = cfg.get("dataset", {})
    if data.get("type") not in ("fashion_mnist", "mnist"):
        tit.fail(f"dataset {data}: only fashion_mnist and mnist are mirrored")
    folder = data.get("path", "/usr/share/datasets/fashion-mnist")
    x_test, y_test = tit.load_split(folder, "t10k")
    # The test split holds every class (as MNIST's and Fashion-MNIST's do): no need to read the
    # 60,000 training images for their count; a wrong count fails on the weights' shapes.
    classes, shape = int(y_test.max()) + 1, tuple(x_test.shape[1:])
    abar = tit.ddpm_abar(cfg["sde"])
    T = len(abar)
    if a.n > len(x_test):
        tit.fail(f"--n {a.n}: the test split has {len(x_test)} images")

    rng = np.random.default_rng(a.seed)
    rows = torch.from_numpy(rng.permutation(len(x_test))[:a.n])
    m = a.n * a.times
    x0 = x_test[rows].repeat(a.times, *([1] * len(shape)))
    labels = y_test[rows].repeat(a.times)
    t = torch.from_numpy(np.floor((rng.permutation(m) + rng.random(m)) / m * T).astype(np.int64))
    z = torch.from_numpy(rng.standard_normal((m,) + shape).astype(np.float32))
    ab = abar[t].view(-1, *([1] * len(shape)))
    xt = (ab.sqrt() * x0.double() + (1 - ab).sqrt() * z.double()).float()
    null = torch.full((m,), 1 if a.null else 0, dtype=torch.uint8)

    net = tit.build_network(cfg["network"], shape, classes, torch.Generator().manual_seed(0))
    first = None
    print(f"{m} rows: {a.n} test images x {a.times} times, seed {a.seed}, {'null' if a.null else 'own'} labels")
    for path in a.weights:
        trained = net.with_weights(tit.runexp_weights(path, net.named_parameters()))
        with torch.no_grad():
            err = torch.cat([((trained.forward(xt[i:i + 500], t[i:i + 500].float(), labels[i:i + 500], null[i:i + 500],
                                           False) - z[i:i + 500]) ** 2).flatten(1).mean(1)
                             for i in range(0, m, 500)]).double()
        bins = "  ".join(f"[{lo},{hi}) {err[(t >= lo) & (t < hi)].mean():.5f}"
                         for lo, hi in zip(T_BINS[:-1], T_BINS[1:]) if lo < T)
        line = f"{path}: loss {err.mean():.5f} +- {err.std() / m ** 0.5:.5f}"
        if first is None:
            first = err
        else:
            d = err - first
            line += f"  (minus the first: {d.mean():+.5f} +- {d.std() / m ** 0.5:.5f})"
        print(line + "\n    " + bins, flush=True)


if __name__ == "__main__":
    main()
