#!/usr/bin/python3
"""PyTorch reference forward pass of the `dit` network (plugins/dit), for tests/plugins/test_dit.cpp.

Builds the same architecture as plugins/dit/dit.cpp in torch (DiT, Peebles & Xie 2023, sec. 3.2:
Conv2d patch embedding, fixed 2-D sin-cos position embedding, adaLN-Zero blocks, final adaLN layer),
draws every weight at random from a seed -- the adaLN-Zero and final layers too, which DiT starts at
zero, so that the comparison is not trivially 0 = 0 -- runs one forward pass on a random input, times
and labels (some rows with the null label), and writes

  /config            attributes: channels, height, width, hidden, depth, heads, patch, mlp_ratio,
                     frequency_dim, num_classes
  /weights/<name>    every parameter and buffer under the C++ module's names (float32)
  /input/x           (N, C, H, W)      /input/t (N)
  /input/labels      (N) int32         /input/null_mask (N) uint8 (1: the condition is dropped)
  /output            (N, C, H, W)      the torch forward pass, computed in float64 then rounded

Run with Debian's python (torch is not in CI; the .h5 file is committed):
  /usr/bin/python3 tools/baselines/dit_reference.py tests/data/dit_reference.h5

With --grad it writes the gradients of a training loss instead, at the Fashion-MNIST experiment's
geometry (28x28, patch 4: 49 tokens, 4 heads) with a narrower network (GRAD_CONFIG), for the
backward pass at the token count the experiment trains with; besides the above:

  /input/target      (N, C, H, W)      the regression target (the noise, in training)
  /loss              (1) mean((output - target)^2), float64
  /grads/<name>      d loss / d parameter, every trainable parameter, float64 rounded

  /usr/bin/python3 tools/baselines/dit_reference.py --grad tests/data/dit_reference_grad.h5
"""
import math
import sys

import h5py
import numpy as np
import torch
from torch import nn

CONFIG = dict(channels=1, height=8, width=4, hidden=16, depth=2, heads=2, patch=2, mlp_ratio=4.0,
              frequency_dim=32, num_classes=10)
BATCH = 5
SEED = 2023
GRAD_CONFIG = dict(channels=1, height=28, width=28, hidden=32, depth=2, heads=4, patch=4, mlp_ratio=4.0,
                   frequency_dim=64, num_classes=10)
GRAD_BATCH = 6


def sincos_position_embedding_2d(dim, grid_h, grid_w):
    """MAE's get_2d_sincos_pos_embed (DiT's pos_embed) for a grid_h x grid_w grid: the first half
    of the features encodes the column, the second the row (np.meshgrid(grid_w, grid_h))."""
    grid = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))

    def one_axis(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_axis(dim // 2, grid[0]), one_axis(dim // 2, grid[1])], axis=1)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k, v projections (the core's MultiHeadAttention)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        n, t, d = x.shape
        split = lambda y: y.reshape(n, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1) @ v
        return self.out(a.transpose(1, 2).reshape(n, t, d))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.attn = Attention(hidden, heads)
        self.fc1 = nn.Linear(hidden, int(hidden * mlp_ratio))
        self.fc2 = nn.Linear(int(hidden * mlp_ratio), hidden)
        self.adaLN = nn.Linear(hidden, 6 * hidden)
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)

    def forward(self, x, silu_c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN(silu_c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm(x), shift_msa, scale_msa))
        h = self.fc2(nn.functional.gelu(self.fc1(modulate(self.norm(x), shift_mlp, scale_mlp))))  # exact GELU
        return x + gate_mlp.unsqueeze(1) * h


class FinalLayer(nn.Module):
    def __init__(self, hidden, out_features):
        super().__init__()
        self.adaLN = nn.Linear(hidden, 2 * hidden)
        self.linear = nn.Linear(hidden, out_features)
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)

    def forward(self, x, silu_c):
        shift, scale = self.adaLN(silu_c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, frequency_dim):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.fc1 = nn.Linear(frequency_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, t):
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype) / half)
        args = t[:, None] * freqs[None]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # the core's order (DiT: cos, sin)
        return self.fc2(nn.functional.silu(self.fc1(emb)))


class DiT(nn.Module):
    def __init__(self, channels, height, width, hidden, depth, heads, patch, mlp_ratio, frequency_dim, num_classes):
        super().__init__()
        self.channels, self.height, self.width, self.patch = channels, height, width, patch
        # Conv2d(kernel = stride = p): its weight (hidden, C, p, p) flattened is patch_embed.weight.
        self.patch_embed = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        pos = sincos_position_embedding_2d(hidden, height // patch, width // patch)
        self.register_buffer("pos_embed", torch.from_numpy(pos).float().unsqueeze(0))
        self.time_embed = TimestepEmbedder(hidden, frequency_dim)
        self.class_embed = nn.Parameter(torch.zeros(num_classes + 1, hidden))  # last row: the null label
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.final = FinalLayer(hidden, patch * patch * channels)
        self.num_classes = num_classes

    def unpatchify(self, tokens):
        n, p, c = tokens.shape[0], self.patch, self.channels
        gh, gw = self.height // p, self.width // p
        x = tokens.reshape(n, gh, gw, c, p, p)
        return torch.einsum("nhwcpq->nchpwq", x).reshape(n, c, gh * p, gw * p)

    def forward(self, x, t, labels, null_mask):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (N, T, hidden)
        rows = torch.where(null_mask.bool(), torch.full_like(labels, self.num_classes), labels)
        silu_c = nn.functional.silu(self.time_embed(t) + self.class_embed[rows])
        for block in self.blocks:
            tokens = block(tokens, silu_c)
        return self.unpatchify(self.final(tokens, silu_c))


def main(path, grad=False):
    torch.manual_seed(SEED)
    c, batch = (GRAD_CONFIG, GRAD_BATCH) if grad else (CONFIG, BATCH)
    net = DiT(**c).double()
    with torch.no_grad():
        for name, p in net.named_parameters():
            # Every weight random and O(1 / sqrt(fan_in)), adaLN-Zero and final layers included.
            fan_in = p.shape[1] if p.dim() == 2 else (p[0].numel() if p.dim() > 2 else p.shape[0])
            p.copy_(torch.randn_like(p) * (0.5 if name == "class_embed" else 1.0 / math.sqrt(fan_in)))
    x = torch.randn(batch, c["channels"], c["height"], c["width"], dtype=torch.float64)
    t = torch.rand(batch, dtype=torch.float64) * 999.0
    labels = torch.randint(0, c["num_classes"], (batch,))
    null_mask = torch.tensor([0, 1, 0, 0, 1, 0][:batch], dtype=torch.uint8)
    target = torch.randn(x.shape, dtype=torch.float64).float().double()
    # The C++ network is float32: round the weights and inputs first, compute in float64.
    with torch.no_grad():
        for p in list(net.parameters()) + list(net.buffers()):
            p.copy_(p.float().double())
    x, t = x.float().double(), t.float().double()
    out = net(x, t, labels, null_mask)
    loss = ((out - target) ** 2).mean()
    loss.backward()
    out = out.detach()

    with h5py.File(path, "w") as f:
        g = f.create_group("config")
        for k, v in c.items():
            g.attrs[k] = v
        w = f.create_group("weights")
        for name, v in net.state_dict().items():
            v = v.float().numpy()
            if name == "patch_embed.weight":
                v = v.reshape(v.shape[0], -1)  # (hidden, C p p): patchify's (c, a, b) order
            w.create_dataset(name, data=v)
        f["input/x"] = x.float().numpy()
        f["input/t"] = t.float().numpy()
        f["input/labels"] = labels.numpy().astype(np.int32)
        f["input/null_mask"] = null_mask.numpy()
        f["output"] = out.float().numpy()
        if grad:
            f["input/target"] = target.float().numpy()
            f["loss"] = np.array([loss.item()])
            g = f.create_group("grads")
            for name, p in net.named_parameters():
                v = p.grad.float().numpy()
                g.create_dataset(name, data=v.reshape(v.shape[0], -1) if name == "patch_embed.weight" else v)
    print(f"wrote {path}: output max |y| {out.abs().max().item():.4f}, "
          f"{sum(p.numel() for p in net.parameters())} parameters")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--grad"]
    grad = "--grad" in sys.argv[1:]
    main(args[0] if args else "tests/data/dit_reference_grad.h5" if grad else "tests/data/dit_reference.h5", grad)
