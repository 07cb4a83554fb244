#!/usr/bin/python3
"""The PyTorch same-recipe baseline of an image experiment (issue 16): train and sample in PyTorch
what `runexp EXPERIMENT.yaml` trains and samples, and write the samples for build/bin/score_samples,
which scores them with the run's own metrics and reference.

    train_images_torch.py EXPERIMENT.yaml --seed S --out SAMPLES.h5 [--threads 2] [--steps N] [--n N]
                          [--weights RESULTS.h5]

--steps overrides train.steps (the cosine schedule then ends there, as `runexp ... train.steps=N`;
a warm-up longer than a short smoke run is cut to steps - 1, which runexp refuses), --n the first
sampler's n. --weights skips the training and samples the EMA weights (`ema/`, or `model/` without
an EMA) of a runexp results file of the same experiment: sampling in PyTorch what runexp trained
tells a gap in training from one in sampling. Score the output against a results file of the same
experiment:

    build/bin/score_samples results/X.h5 SAMPLES.h5

SAMPLES.h5: `images` (n, C, H, W) float32 in data coordinates (pixels in [-1, 1], as runexp's
/samples/<s>/x), `labels` (n) int64 when the samples ask for classes; attributes train_seconds,
sample_seconds, steps, seed, torch, threads, experiment, sampler, final_loss, config (the YAML read),
weights (the --weights file, or empty); after training also `model/<name>` and `ema/<name>`, the
trained weights under the mirror's parameter names (so --weights and other scripts can read them).

What it mirrors (our file in brackets):
  network    plugins/unet and plugins/dit through tools/baselines/unet_reference.py and
             dit_reference.py, float32 and trainable, initialised as the plugins do (PyTorch's
             default uniform for convolutions and linear layers; zero for each residual block's
             conv2, each attention's out projection and the U-Net's out_conv; DiT's adaLN-Zero,
             Xavier and N(0, 0.02) layers; class embeddings N(0, 1) for the U-Net, N(0, 0.02) for
             the DiT, with a last row for the null label)
  data       Fashion-MNIST (or MNIST with path:) from the IDX files, pixels b -> 2 b / 255 - 1
             [plugins/image_data/image_set.cpp]; drawn in epochs, each a fresh permutation of the
             60,000 training images, batch after batch across epoch boundaries
             [epoch_order.hpp]; flip: mirrors at random
  path       DDPM's betas (linear or cosine), abar in float64, the network's time the step index
             [plugins/ddpm/ddpm_path.cpp]
  loss       eps_mse: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) z, mean of the per-sample mean
             squared error; t_sampling low_discrepancy: per shard of batch_size / shards rows,
             u_i = (u0 + i / m) mod 1, t = floor(T u) [core/src/model/path.cpp, train.shards]
  labels     train.label_dropout: each row's label is replaced by the null label with that
             probability [core/src/run/train_loop.cpp, drop_labels]
  optimizer  adam / adamw / sgd with our defaults (betas 0.9, 0.999, eps 1e-8, weight decay 0, or
             0.01 for adamw); grad_clip (default off) as clip_grad_norm_ [core/src/run/experiment.cpp]
  schedule   lr at update k (0-based): warm-up base k / warmup, then cosine to min_lr at train.steps
             [core/src/optim/lr_schedule.cpp]
  EMA        starts as a copy of the model, after each update decay min(ema, (1 + n) / (10 + n))
             with n the updates so far (ema_warmup, default true) [core/src/optim/ema.cpp]
  sampler    DDIM (eta 0 by default) on the linear grid floor(999 (K - 1 - i) / (K - 1)), i = 0..K-1
             (or `timesteps:`), x0_hat clipped to [-clip_x0, clip_x0] and eps_hat read back from it,
             the last step from t = 0 to x0_hat; from the EMA (use_ema); labels `balanced` (sample
             i asks for class i mod 10), one class, or as the data draws them; classifier-free
             guidance (w) if the sampler has it [plugins/ddpm/ddim_sampler.cpp, clip_x0.hpp,
             core/src/model/time_grids.cpp]

Where it differs: every random stream (initial weights, epoch order, times, noise, dropout
masks, label dropout, sampler draws) is PyTorch's, not ours, so a seed here is not the same run as
runexp's seed; the shards run as one batch (the same gradient: shard means weighted 1 / shards);
PyTorch's kernels sum in another order. Only the first sampler is run, once (no repeats). Keys it
does not mirror (other networks, losses, samplers, spacings, codecs, datasets, init:) are refused.
"""
import argparse
import copy
import gzip
import math
import os
import struct
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_reference  # noqa: E402
from dit_reference import DiT  # noqa: E402
from torch_threads import set_threads  # noqa: E402


def fail(msg):
    sys.exit(f"train_images_torch: error: {msg}")


def section(cfg, key, allowed, where=None):
    """cfg[key] as a dict (a bare name is {type: name}), refusing keys this script does not mirror."""
    node = cfg.get(key, {}) if key is not None else cfg
    if isinstance(node, str):
        node = {"type": node}
    where = where or key
    extra = sorted(set(node) - set(allowed))
    if extra:
        fail(f"{where}: {', '.join(extra)} not mirrored by this script (it knows {', '.join(sorted(allowed))})")
    return node


# ---- data [plugins/image_data] ----

def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), data[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def load_split(folder, prefix):
    def find(base):
        for name in (base + ".gz", base):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        fail(f"{folder}/{base}.gz not found (Debian's dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist)")
    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    # b -> 2 b / 255 - 1 in double, rounded once to float32 (0 and 255 exactly -1 and +1).
    x = (images.astype(np.float64) * (2.0 / 255.0) - 1.0).astype(np.float32)[:, None]
    return torch.from_numpy(x), torch.from_numpy(labels)


class EpochStream:
    """Batches of an endless sequence of epochs, each a fresh permutation of all rows [epoch_order.hpp]."""

    def __init__(self, x, labels, gen, flip):
        self.x, self.labels, self.gen, self.flip = x, labels, gen, flip
        self.perm, self.at = torch.randperm(len(x), generator=gen), 0

    def draw(self, n):
        rows = []
        while n > 0:
            if self.at == len(self.perm):
                self.perm, self.at = torch.randperm(len(self.x), generator=self.gen), 0
            take = min(n, len(self.perm) - self.at)
            rows.append(self.perm[self.at:self.at + take])
            self.at, n = self.at + take, n - take
        rows = torch.cat(rows)
        x = self.x[rows]
        if self.flip:
            mirror = torch.rand(len(rows), generator=self.gen) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x, self.labels[rows]


# ---- path [plugins/ddpm/ddpm_path.cpp] ----

def ddpm_abar(sde):
    sde = section({"sde": sde}, "sde", {"type", "timesteps", "schedule", "beta_start", "beta_end", "cosine_s", "max_beta"})
    if sde.get("type") != "ddpm":
        fail(f"sde.type {sde.get('type')}: only ddpm is mirrored")
    T = int(sde.get("timesteps", 1000))
    if sde.get("schedule", "linear") == "linear":
        b0, b1 = float(sde.get("beta_start", 1e-4)), float(sde.get("beta_end", 0.02))
        betas = [b0 if T == 1 else b0 + (b1 - b0) * i / (T - 1) for i in range(T)]
    else:
        s, max_beta = float(sde.get("cosine_s", 0.008)), float(sde.get("max_beta", 0.999))
        f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0)


# ---- networks [plugins/unet, plugins/dit] ----

class UNetNet:
    """unet_reference.UNet in float32 with trainable weights, initialised as plugins/unet is."""

    def __init__(self, net, shape, classes, gen):
        c = dict(channels=64, channel_mult=[1, 2, 2], num_res_blocks=2, attention_resolutions=[], heads=1,
                 groups=32, dropout=0.1, class_conditional=False)
        c.update({k: v for k, v in net.items() if k != "type"})
        self.classes = classes if c["class_conditional"] else 0
        cfg = dict(in_channels=shape[0], height=shape[1], width=shape[2], channels=int(c["channels"]),
                   channel_mult=[int(m) for m in c["channel_mult"]], num_res_blocks=int(c["num_res_blocks"]),
                   attention_resolutions=[int(r) for r in c["attention_resolutions"]], heads=int(c["heads"]),
                   groups=int(c["groups"]), num_classes=self.classes)
        self.ref = unet_reference.UNet(cfg, gen, dropout=float(c["dropout"]))  # its random draws are replaced
        self.ref.dtype = torch.float32
        weights = {}
        for name, v in self.ref.P.p.items():
            module, kind = name.rsplit(".", 1) if "." in name else ("", name)
            parts = module.split(".")
            if name == "class_embedding":  # nn.Embedding's N(0, 1)
                w = torch.randn(v.shape, generator=gen)
            elif parts[-1] in ("norm", "norm1", "norm2", "out_norm"):  # GroupNorm: identity
                w = torch.ones(v.shape) if kind == "weight" else torch.zeros(v.shape)
            elif parts[-1] == "conv2" or parts[-2:] == ["attn", "out"] or parts[0] == "out_conv":  # zero_module
                w = torch.zeros(v.shape)
            else:  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
                wshape = self.ref.P.p[module + ".weight"].shape
                bound = 1.0 / math.sqrt(float(np.prod(wshape[1:])))
                w = (torch.rand(v.shape, generator=gen) * 2 - 1) * bound
            weights[name] = w.float().requires_grad_()
        self.ref.P.p = weights

    def named_parameters(self):
        return list(self.ref.P.p.items())

    def forward(self, x, t, labels, null, training):
        self.ref.training = training
        return self.ref.forward(x, t, labels, null)

    def with_weights(self, weights):
        other = copy.copy(self)
        other.ref = copy.copy(self.ref)
        other.ref.P = copy.copy(self.ref.P)
        other.ref.P.p = weights
        return other


class DiTNet:
    """dit_reference.DiT, initialised as plugins/dit is; class_embed frozen at 0 when unconditional."""

    def __init__(self, net, shape, classes, gen):
        c = dict(hidden=128, depth=4, heads=4, patch=2, mlp_ratio=4.0, frequency_dim=256, class_conditional=False)
        c.update({k: v for k, v in net.items() if k != "type"})
        self.classes = classes if c["class_conditional"] else 0
        hidden, p = int(c["hidden"]), int(c["patch"])
        self.m = DiT(channels=shape[0], height=shape[1], width=shape[2], hidden=hidden, depth=int(c["depth"]),
                     heads=int(c["heads"]), patch=p, mlp_ratio=float(c["mlp_ratio"]),
                     frequency_dim=int(c["frequency_dim"]), num_classes=self.classes)
        with torch.no_grad():
            for name, q in self.m.named_parameters():
                parts = name.split(".")
                if name == "patch_embed.weight":  # Xavier on the (hidden, C p p) matrix
                    a = math.sqrt(6.0 / (q[0].numel() + q.shape[0]))
                    q.copy_((torch.rand(q.shape, generator=gen) * 2 - 1) * a)
                elif name == "patch_embed.bias":
                    q.zero_()
                elif name == "class_embed":
                    q.copy_(torch.randn(q.shape, generator=gen) * 0.02 if self.classes else torch.zeros(q.shape))
                    q.requires_grad_(self.classes > 0)
                elif parts[0] == "time_embed":  # N(0, 0.02) weights, zero bias
                    q.copy_(torch.randn(q.shape, generator=gen) * 0.02 if parts[-1] == "weight" else torch.zeros(q.shape))
                elif "adaLN" in parts or name.startswith("final.linear"):  # adaLN-Zero
                    q.zero_()
                elif parts[-2] in ("fc1", "fc2"):  # Xavier weights, zero bias
                    if parts[-1] == "weight":
                        a = math.sqrt(6.0 / (q.shape[0] + q.shape[1]))
                        q.copy_((torch.rand(q.shape, generator=gen) * 2 - 1) * a)
                    else:
                        q.zero_()
                elif parts[-2] in ("q", "k", "v", "out"):  # torch.nn.Linear's default
                    bound = 1.0 / math.sqrt(q.shape[-1] if parts[-1] == "weight" else
                                            self.m.get_parameter(".".join(parts[:-1]) + ".weight").shape[1])
                    q.copy_((torch.rand(q.shape, generator=gen) * 2 - 1) * bound)
                else:
                    raise AssertionError(f"no initialisation rule for {name}")

    def named_parameters(self):
        return [(k, v) for k, v in self.m.named_parameters() if v.requires_grad]

    def forward(self, x, t, labels, null, training):
        if not self.classes:
            labels, null = torch.zeros(len(x), dtype=torch.long), torch.ones(len(x), dtype=torch.uint8)
        return self.m(x, t, labels, null)

    def with_weights(self, weights):
        other = copy.copy(self)
        other.m = copy.deepcopy(self.m)
        with torch.no_grad():
            for k, v in other.m.named_parameters():
                if k in weights:
                    v.copy_(weights[k])
        return other


def build_network(net, shape, classes, gen):
    kinds = {"unet": ({"type", "channels", "channel_mult", "num_res_blocks", "attention_resolutions", "heads",
                       "dropout", "groups", "class_conditional"}, UNetNet),
             "dit": ({"type", "hidden", "depth", "heads", "patch", "mlp_ratio", "frequency_dim", "class_conditional"},
                     DiTNet)}
    if net.get("type") not in kinds:
        fail(f"network.type {net.get('type')}: only unet and dit are mirrored")
    allowed, cls = kinds[net["type"]]
    return cls(section({"network": net}, "network", allowed), shape, classes, gen)


# ---- training [core/src/run/train_loop.cpp, core/src/optim] ----

def lr_schedule(train, base, steps):
    node = train.get("lr_schedule")
    if node is None:
        return lambda k: base
    node = section({"s": node}, "s", {"type", "warmup", "min_lr"}, "train.lr_schedule")
    kind, warmup, min_lr = node.get("type"), int(node.get("warmup", 0)), float(node.get("min_lr", 0.0))
    if kind == "constant":
        return lambda k: base
    if kind == "cosine" and warmup >= steps:
        print(f"note: train.lr_schedule.warmup {warmup} >= steps {steps} (runexp refuses it): cut to {steps - 1}")
        warmup = steps - 1
    if kind not in ("cosine", "warmup", "linear_warmup"):
        fail(f"train.lr_schedule.type {kind}: expected constant, cosine or warmup")

    def lr_at(k):
        if k < warmup:
            return base * k / warmup
        if kind != "cosine":
            return base
        progress = min(1.0, (k - warmup) / (steps - warmup))
        return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return lr_at


def make_optimizer(train, params):
    o = section({"o": train.get("optimizer", {})}, "o",
                {"type", "lr", "betas", "eps", "weight_decay", "momentum", "dampening", "nesterov"}, "train.optimizer")
    kind, lr = o.get("type", "adam"), float(o.get("lr", 1e-3))
    wd = float(o.get("weight_decay", 1e-2 if kind == "adamw" else 0.0))
    if kind in ("adam", "adamw"):
        betas = tuple(float(b) for b in o.get("betas", [0.9, 0.999]))
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=betas, eps=float(o.get("eps", 1e-8)), weight_decay=wd), lr
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(o.get("momentum", 0.0)), weight_decay=wd,
                               dampening=float(o.get("dampening", 0.0)), nesterov=bool(o.get("nesterov", False))), lr
    fail(f"train.optimizer.type {kind}: expected adam, adamw or sgd")


def train_times(n, shards, T, low_discrepancy, gen):
    """One time per row; low_discrepancy per shard of n / shards rows, as each shard's loss draws them."""
    if not low_discrepancy:
        return torch.randint(0, T, (n,), generator=gen)
    m, out = n // shards, []
    for _ in range(shards):
        u = (torch.rand(1, generator=gen, dtype=torch.float64) + torch.arange(m, dtype=torch.float64) / m) % 1.0
        out.append(torch.clamp(torch.floor(u * T), max=T - 1).long())
    return torch.cat(out)


# ---- sampling [plugins/ddpm/ddim_sampler.cpp] ----

def ddim_grid(sampler, T):
    if "timesteps" in sampler:
        return [int(t) for t in sampler["timesteps"]]
    steps = int(sampler.get("steps", 50))
    if steps == 1:
        return [T - 1]
    whole = T - 1  # floor(linspace(t_max, 0, steps)) in integers
    return [whole * (steps - 1 - i) // (steps - 1) for i in range(steps)]


@torch.no_grad()
def ddim_sample(net, x, labels, grid, abar, clip, eta, w, gen):
    n = len(x)
    cond_null = torch.zeros(n, dtype=torch.uint8)
    for i, t in enumerate(grid):
        last = i + 1 == len(grid)
        tt = torch.full((n,), float(t))
        if w != 0.0:  # classifier-free guidance on F: (1 + w) F(x, c) - w F(x, null)
            both = net.forward(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, labels]),
                               torch.cat([cond_null, torch.ones(n, dtype=torch.uint8)]), False)
            eps = (1 + w) * both[:n] - w * both[n:]
        else:
            eps = net.forward(x, tt, labels, cond_null, False)
        a_t, s_t = math.sqrt(abar[t]), math.sqrt(1 - abar[t])
        x0 = (x - s_t * eps) / a_t
        if clip > 0:
            x0 = x0.clamp(-clip, clip)
            eps = (x - a_t * x0) / s_t
        if last:  # the last step goes to the data: x = x0_hat
            x = x0
            continue
        s = grid[i + 1]
        a_s, s_s = math.sqrt(abar[s]), math.sqrt(1 - abar[s])
        var = (s_t ** 2 - (a_t / a_s) ** 2 * s_s ** 2) * s_s ** 2 / s_t ** 2  # posterior variance (eq. 16)
        c = eta * math.sqrt(max(var, 0.0))
        x = a_s * x0 + math.sqrt(max(0.0, s_s ** 2 - c * c)) * eps
        if c > 0:
            x = x + c * torch.randn(x.shape, generator=gen)
    return x


def runexp_weights(path, named):
    """The EMA weights (else the model's) of a runexp results file (or of this script's output),
    under the mirror's names.

    The file names each parameter by its module path, which may carry a prefix (the denoiser's
    `net.`); a mirror parameter takes the one file entry that is its name or ends in `.name`."""
    with h5py.File(path, "r") as f:
        group = "ema" if "ema" in f else "model"
        if group not in f:
            fail(f"{path}: no /ema or /model group (a runexp results file after training?)")
        stored = {k: np.asarray(v) for k, v in f[group].items()}
    out = {}
    for name, p in named:
        hits = [k for k in stored if k == name or k.endswith("." + name)]
        if len(hits) != 1:
            fail(f"{path}: /{group} has {len(hits)} entries for parameter {name} (expected one)")
        v = stored[hits[0]]
        if v.size != p.numel():
            fail(f"{path}: /{group}/{hits[0]} has {v.size} values, the network's {name} {p.numel()}")
        out[name] = torch.from_numpy(v.astype(np.float32)).reshape(p.shape)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, help="override train.steps (smoke runs)")
    ap.add_argument("--n", type=int, help="override the first sampler's n")
    ap.add_argument("--weights", help="sample the EMA (or model) weights of this runexp results file; no training")
    a = ap.parse_args()
    set_threads(a.threads)
    with open(a.experiment) as f:
        text = f.read()
    cfg = yaml.safe_load(text)
    section(cfg, None, {"name", "seed", "dataset", "network", "sde", "loss", "train", "sampler", "samplers",
                        "reference", "metrics", "codec"}, "the experiment")
    if cfg.get("codec") not in (None, "identity", {"type": "identity"}):
        fail("codec: only identity (the default for images) is mirrored")

    data = section(cfg, "dataset", {"type", "path", "flip", "flatten"})
    if data.get("type") not in ("fashion_mnist", "mnist") or data.get("flatten"):
        fail(f"dataset {data}: only fashion_mnist and mnist (IDX files, not flattened) are mirrored")
    folder = data.get("path", "/usr/share/datasets/fashion-mnist")
    x_train, y_train = load_split(folder, "train")
    classes = int(y_train.max()) + 1
    shape = tuple(x_train.shape[1:])

    abar = ddpm_abar(cfg["sde"])
    T = len(abar)
    loss = section(cfg, "loss", {"type", "t_sampling", "preconditioning"})
    if loss.get("type") not in ("eps_mse", "mse") or loss.get("preconditioning", "eps") not in ("eps", {"type": "eps"}):
        fail(f"loss {loss}: only eps_mse (or mse with the eps preconditioning) is mirrored")
    low_discrepancy = loss.get("t_sampling", "iid") == "low_discrepancy"

    train = section(cfg, "train", {"steps", "batch_size", "shards", "label_dropout", "optimizer", "lr_schedule", "ema",
                                   "ema_warmup", "grad_clip", "log_every", "checkpoint_every", "keep_checkpoints",
                                   "loss_by_t_bins"})
    steps = a.steps if a.steps is not None else int(train.get("steps", 1000))
    batch, shards = int(train.get("batch_size", 256)), int(train.get("shards", 1))
    if batch % shards:
        fail(f"train.shards {shards} does not divide batch_size {batch}")
    label_dropout, ema_decay = float(train.get("label_dropout", 0.0)), float(train.get("ema", 0.0))
    ema_warmup, grad_clip = bool(train.get("ema_warmup", True)), float(train.get("grad_clip", 0.0))

    samplers = cfg.get("samplers") or ([cfg["sampler"]] if "sampler" in cfg else [])
    if not samplers:
        fail("the experiment has no sampler")
    sampler = section({"s": samplers[0]}, "s", {"type", "name", "steps", "n", "labels", "clip_x0", "trajectory", "eta",
                                                "timesteps", "spacing", "prior", "use_ema", "repeats", "batch",
                                                "guidance"}, "samplers.0")
    if sampler.get("type") != "ddim" or sampler.get("spacing", "linear") not in ("linear", {"type": "linear"}) \
            or sampler.get("prior", "iid") != "iid":
        fail(f"samplers.0 {sampler}: only ddim on the linear grid (or timesteps:) from iid draws is mirrored")
    guidance = sampler.get("guidance") or {}
    if guidance and guidance.get("type") != "classifier_free":
        fail(f"samplers.0.guidance {guidance}: only classifier_free is mirrored")
    w = float(guidance["w"]) if "w" in guidance else float(guidance["scale"]) - 1 if "scale" in guidance else 0.0
    n = a.n if a.n is not None else int(sampler.get("n", 2000))

    gens = {k: torch.Generator().manual_seed(a.seed * 16 + i) for i, k in enumerate(("init", "data", "train", "sample"))}
    torch.manual_seed(a.seed * 16 + 15)  # dropout masks (F.dropout draws from the global generator)
    net = build_network(cfg["network"], shape, classes, gens["init"])
    named = net.named_parameters()
    params = [p for _, p in named]
    print(f"{cfg.get('name', a.experiment)}: {type(net).__name__[:-3]} with {sum(p.numel() for p in params)} parameters, "
          f"{steps} steps of {batch}, seed {a.seed}, {a.threads} threads, torch {torch.__version__}", flush=True)
    opt, base_lr = make_optimizer(train, params)
    lr_at = lr_schedule(train, base_lr, steps)
    ema = {k: p.detach().clone() for k, p in named} if ema_decay > 0 else None
    if a.weights:  # sample runexp's trained network instead of training one
        ema, steps = runexp_weights(a.weights, named), 0
        print(f"sampling the weights of {a.weights}; no training")
    stream = EpochStream(x_train, y_train, gens["data"], bool(data.get("flip", False)))

    log_every, window, final_loss = max(1, steps // 10), [], float("nan")
    start = time.perf_counter()
    for k in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(k)
        x0, y = stream.draw(batch)
        null = torch.zeros(batch, dtype=torch.uint8)
        if net.classes and label_dropout > 0:  # Ho & Salimans 2022, Algorithm 1
            null = (torch.rand(batch, generator=gens["train"], dtype=torch.float64) < label_dropout).to(torch.uint8)
        t = train_times(batch, shards, T, low_discrepancy, gens["train"])
        z = torch.randn(x0.shape, generator=gens["train"])
        ab = abar[t].view(-1, 1, 1, 1)
        xt = (ab.sqrt() * x0.double() + (1 - ab).sqrt() * z.double()).float()
        value = F.mse_loss(net.forward(xt, t.float(), y, null, True), z)
        if not math.isfinite(value.item()):
            fail(f"training diverged: loss {value.item()} at step {k + 1}")
        opt.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if ema is not None:  # shadow.mul_(d).add_(param, alpha=1 - d)
            d = min(ema_decay, (1 + k) / (10 + k)) if ema_warmup else ema_decay
            with torch.no_grad():
                for name, p in named:
                    ema[name].mul_(d).add_(p.detach(), alpha=1 - d)
        window.append(value.item())
        if (k + 1) % log_every == 0 or k + 1 == steps:
            final_loss = sum(window) / len(window)
            secs = time.perf_counter() - start
            print(f"step {k + 1}/{steps}  loss {final_loss:.5f}  lr {lr_at(k):.3g}  {secs:.0f} s "
                  f"({secs / (k + 1):.3f} s/step)", flush=True)
            window = []
    train_seconds = time.perf_counter() - start

    labels_opt = sampler.get("labels")
    ask_labels = net.classes > 0 or labels_opt is not None or bool(guidance)
    if labels_opt == "balanced":
        labels = torch.arange(n) % classes
    elif labels_opt is None or labels_opt == "data":  # as the data set draws them
        labels = y_train[torch.randint(0, len(y_train), (n,), generator=gens["sample"])]
    else:
        labels = torch.full((n,), int(labels_opt), dtype=torch.long)
    if guidance and not net.classes:
        fail("classifier-free guidance needs a class-conditional network")
    use_ema = ema is not None and (bool(a.weights) or sampler.get("use_ema", True))
    sample_net = net.with_weights(ema) if use_ema else net
    grid = ddim_grid(sampler, T)
    chunk = int(sampler.get("batch", 0)) or 500  # rows per pass; each row's sample is the same either way
    start = time.perf_counter()
    x = torch.randn((n,) + shape, generator=gens["sample"])
    out = [ddim_sample(sample_net, x[i:i + chunk], labels[i:i + chunk], grid, abar.tolist(), float(sampler.get("clip_x0", 0)),
                       float(sampler.get("eta", 0.0)), w, gens["sample"]) for i in range(0, n, chunk)]
    images = torch.cat(out)
    sample_seconds = time.perf_counter() - start
    print(f"sampled {n} with {sampler.get('name', 'ddim')} ({len(grid)} steps{', EMA' if use_ema else ''}) in "
          f"{sample_seconds:.1f} s; training took {train_seconds:.1f} s", flush=True)

    with h5py.File(a.out, "w") as f:
        f["images"] = images.numpy().astype(np.float32)
        if ask_labels:
            f["labels"] = labels.numpy().astype(np.int64)
        attrs = dict(train_seconds=train_seconds, sample_seconds=sample_seconds, steps=steps, seed=a.seed,
                     torch=str(torch.__version__), threads=a.threads, experiment=str(cfg.get("name", a.experiment)),
                     sampler=str(sampler.get("name", "ddim")), final_loss=final_loss, config=text,
                     weights=a.weights or "")
        for key, value in attrs.items():
            f.attrs[key] = value
        if steps > 0:  # the trained weights under the mirror's names, readable by --weights
            for name, p in named:
                f[f"model/{name}"] = p.detach().numpy().astype(np.float32)
                if ema is not None:
                    f[f"ema/{name}"] = ema[name].numpy().astype(np.float32)
    print(f"wrote {a.out}: images {tuple(images.shape)}{', labels' if ask_labels else ''}")


if __name__ == "__main__":
    main()
