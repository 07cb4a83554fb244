#!/usr/bin/python3
"""PyTorch reference forward pass of the `unet` network (plugins/unet), for tests/plugins/test_unet.cpp.

Builds the same architecture as plugins/unet/unet.cpp in torch (Ho et al. 2020, appendix B, with
Nichol & Dhariwal 2021's scale-shift group norm and multi-head attention; a class embedding with a
null label row), draws every weight at random from a seed -- the zero-initialised layers too (each
residual block's conv2, each attention's output projection, the output convolution), so that the
comparison is not trivially 0 = 0 -- runs one forward pass on a random input, times and labels (one
row with the null label), and writes

  /config            attributes: in_channels, height, width, channels, channel_mult, num_res_blocks,
                     attention_resolutions, heads, groups, num_classes
  /weights/<name>    every parameter under the C++ module's names (float32)
  /input/x           (N, C, H, W)      /input/t (N)
  /input/labels      (N) int32         /input/null_mask (N) uint8 (1: the condition is dropped)
  /output            (N, C, H, W)      the torch forward pass, computed in float64 then rounded

The time embedding's angles t f_k are rounded to float32 as the C++ network computes them (t up to
999 makes that rounding visible); everything else runs in float64.

Run with Debian's python (torch is not in CI; the .h5 file is committed):
  /usr/bin/python3 tools/baselines/unet_reference.py tests/data/unet_reference.h5
"""
import math
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

CONFIG = dict(in_channels=1, height=8, width=8, channels=8, channel_mult=[1, 2], num_res_blocks=1,
              attention_resolutions=[4], heads=2, groups=4, num_classes=3)
BATCH = 4
SEED = 2020


class Params:
    """The network's parameters by C++ name, drawn in construction order."""

    def __init__(self, gen):
        self.gen = gen
        self.p = {}

    def draw(self, name, shape, fan_in=None, norm=False):
        if norm:  # group norm weight near 1, bias near 0
            base = 1.0 if name.endswith("weight") else 0.0
            v = base + 0.2 * torch.randn(shape, generator=self.gen, dtype=torch.float64)
        else:
            v = torch.randn(shape, generator=self.gen, dtype=torch.float64) / math.sqrt(fan_in or 1)
        # Stored in float32 (what the C++ network holds), used in float64.
        self.p[name] = v.float().double()

    def linear(self, name, n_in, n_out):
        self.draw(name + ".weight", (n_out, n_in), n_in)
        self.draw(name + ".bias", (n_out,), n_in)

    def conv(self, name, n_in, n_out, k):
        self.draw(name + ".weight", (n_out, n_in, k, k), n_in * k * k)
        self.draw(name + ".bias", (n_out,), n_in * k * k)

    def norm(self, name, ch):
        self.draw(name + ".weight", (ch,), norm=True)
        self.draw(name + ".bias", (ch,), norm=True)

    def __getitem__(self, name):
        return self.p[name]


class UNet:
    def __init__(self, cfg, gen, dropout=0.0):
        self.cfg = cfg
        self.dropout = dropout  # in every residual block, when self.training (the benchmark)
        self.training = False
        self.dtype = torch.float64
        P = self.P = Params(gen)
        ch, temb = cfg["channels"], 4 * cfg["channels"]
        levels = len(cfg["channel_mult"])
        P.linear("time_mlp.layers.0", ch, temb)
        P.linear("time_mlp.layers.1", temb, temb)
        if cfg["num_classes"]:
            P.draw("class_embedding", (cfg["num_classes"] + 1, temb), 1)
        P.conv("input_conv", cfg["in_channels"], ch, 3)
        # Each entry: (name, in, out, attention?, "down"/"up"/None); res None for a pure downsample.
        self.down, self.up = [], []
        skips, cur, i = [ch], ch, 0
        for l in range(levels):
            width = ch * cfg["channel_mult"][l]
            for _ in range(cfg["num_res_blocks"]):
                self.res(f"down.{i}.res", cur, width)
                cur = width
                attn = self.attention_at(l)
                if attn:
                    self.attention(f"down.{i}.attn", cur)
                self.down.append((f"down.{i}", True, attn, None, width))
                skips.append(cur)
                i += 1
            if l + 1 < levels:
                P.conv(f"down.{i}.down.conv", cur, cur, 3)
                self.down.append((f"down.{i}", False, False, "down", cur))
                skips.append(cur)
                i += 1
        self.res("mid_res1", cur, cur)
        self.attention("mid_attn", cur)
        self.res("mid_res2", cur, cur)
        i = 0
        for l in reversed(range(levels)):
            width = ch * cfg["channel_mult"][l]
            for b in range(cfg["num_res_blocks"] + 1):
                self.res(f"up.{i}.res", cur + skips.pop(), width)
                cur = width
                attn = self.attention_at(l)
                if attn:
                    self.attention(f"up.{i}.attn", cur)
                up = l > 0 and b == cfg["num_res_blocks"]
                if up:
                    P.conv(f"up.{i}.up.conv", cur, cur, 3)
                self.up.append((f"up.{i}", True, attn, "up" if up else None, width))
                i += 1
        P.norm("out_norm", cur)
        P.conv("out_conv", cur, cfg["in_channels"], 3)

    def attention_at(self, level):
        return (self.cfg["height"] >> level) in self.cfg["attention_resolutions"]

    def res(self, name, n_in, n_out):
        P, temb = self.P, 4 * self.cfg["channels"]
        P.norm(name + ".norm1", n_in)
        P.conv(name + ".conv1", n_in, n_out, 3)
        P.linear(name + ".emb", temb, 2 * n_out)
        P.norm(name + ".norm2", n_out)
        P.conv(name + ".conv2", n_out, n_out, 3)  # zero at initialisation in C++; random here
        if n_in != n_out:
            P.conv(name + ".skip", n_in, n_out, 1)

    def attention(self, name, ch):
        self.P.norm(name + ".norm", ch)
        for proj in ("q", "k", "v", "out"):  # out is zero at initialisation in C++; random here
            self.P.linear(f"{name}.attn.{proj}", ch, ch)

    # ---- forward ----

    def conv(self, x, name, stride=1, padding=1):
        return F.conv2d(x, self.P[name + ".weight"], self.P[name + ".bias"], stride=stride, padding=padding)

    def gn(self, x, name):
        return F.group_norm(x, self.cfg["groups"], self.P[name + ".weight"], self.P[name + ".bias"], eps=1e-5)

    def linear(self, x, name):
        return F.linear(x, self.P[name + ".weight"], self.P[name + ".bias"])

    def res_forward(self, x, emb_act, name):
        n_out = self.P[name + ".conv1.weight"].shape[0]
        h = self.conv(F.silu(self.gn(x, name + ".norm1")), name + ".conv1")
        ss = self.linear(emb_act, name + ".emb")
        scale, shift = ss[:, :n_out, None, None], ss[:, n_out:, None, None]
        h = self.gn(h, name + ".norm2") * (1 + scale) + shift  # AdaGN
        h = F.dropout(F.silu(h), self.dropout, self.training)
        h = self.conv(h, name + ".conv2")
        skip = self.conv(x, name + ".skip", padding=0) if (name + ".skip.weight") in self.P.p else x
        return skip + h

    def attention_forward(self, x, name):
        n, c, hh, ww = x.shape
        heads, d = self.cfg["heads"], c // self.cfg["heads"]
        tokens = self.gn(x, name + ".norm").reshape(n, c, hh * ww).transpose(1, 2)  # (N, T, C)

        def split(z):  # (N, T, C) -> (N, heads, T, d): head h owns features [h d, (h + 1) d)
            return z.reshape(n, hh * ww, heads, d).transpose(1, 2)

        q, k, v = (split(self.linear(tokens, f"{name}.attn.{p}")) for p in ("q", "k", "v"))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        o = (w @ v).transpose(1, 2).reshape(n, hh * ww, c)
        o = self.linear(o, name + ".attn.out")
        return x + o.transpose(1, 2).reshape(n, c, hh, ww)

    def layer_forward(self, x, emb_act, entry):
        name, res, attn, resample, _ = entry
        h = x
        if res:
            h = self.res_forward(h, emb_act, name + ".res")
        if attn:
            h = self.attention_forward(h, name + ".attn")
        if resample == "down":
            h = self.conv(h, name + ".down.conv", stride=2)
        if resample == "up":
            h = self.conv(F.interpolate(h, scale_factor=2, mode="nearest"), name + ".up.conv")
        return h

    def time_embedding(self, t):
        half = self.cfg["channels"] // 2
        # f_k rounded to float32 from double, t f_k rounded to float32: as the C++ network.
        f = torch.tensor([math.exp(-math.log(10000.0) * k / half) for k in range(half)], dtype=torch.float32)
        angle = (t.float()[:, None] * f[None, :]).to(self.dtype)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)

    def forward(self, x, t, labels, null_mask):
        emb = self.time_embedding(t)
        emb = self.linear(F.silu(self.linear(emb, "time_mlp.layers.0")), "time_mlp.layers.1")
        if self.cfg["num_classes"]:
            rows = torch.where(null_mask.bool(), torch.full_like(labels, self.cfg["num_classes"]), labels)
            emb = emb + self.P["class_embedding"][rows]
        emb_act = F.silu(emb)
        h = self.conv(x, "input_conv")
        skips = [h]
        for entry in self.down:
            h = self.layer_forward(h, emb_act, entry)
            skips.append(h)
        h = self.res_forward(h, emb_act, "mid_res1")
        h = self.attention_forward(h, "mid_attn")
        h = self.res_forward(h, emb_act, "mid_res2")
        for entry in self.up:
            h = self.layer_forward(torch.cat([h, skips.pop()], dim=1), emb_act, entry)
        return self.conv(F.silu(self.gn(h, "out_norm")), "out_conv")


def main(out_path):
    gen = torch.Generator().manual_seed(SEED)
    net = UNet(CONFIG, gen)
    shape = (BATCH, CONFIG["in_channels"], CONFIG["height"], CONFIG["width"])
    x = torch.randn(shape, generator=gen, dtype=torch.float64).float()
    t = torch.tensor([0.0, 17.0, 503.0, 999.0], dtype=torch.float32)  # DDPM's step indices
    labels = torch.tensor([0, 2, 1, 2], dtype=torch.int64)
    null_mask = torch.tensor([0, 0, 1, 0], dtype=torch.uint8)
    with torch.no_grad():
        y = net.forward(x.double(), t, labels, null_mask)
    with h5py.File(out_path, "w") as f:
        cfg = f.create_group("config")
        for k, v in CONFIG.items():
            cfg.attrs[k] = np.asarray(v, dtype=np.int64)
        w = f.create_group("weights")
        for name, v in net.P.p.items():
            w.create_dataset(name, data=v.float().numpy())
        i = f.create_group("input")
        i.create_dataset("x", data=x.numpy())
        i.create_dataset("t", data=t.numpy())
        i.create_dataset("labels", data=labels.numpy().astype(np.int32))
        i.create_dataset("null_mask", data=null_mask.numpy())
        f.create_dataset("output", data=y.float().numpy())
    print(f"{out_path}: {len(net.P.p)} parameters ({sum(v.numel() for v in net.P.p.values())} values), "
          f"max |output| {y.abs().max().item():.4g}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/unet_reference.h5")
