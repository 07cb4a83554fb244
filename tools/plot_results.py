#!/usr/bin/env python3
"""Plot a diffusion toolkit results file.

    /usr/bin/python3 tools/plot_results.py RESULTS.h5 [--out DIR]

Writes into DIR (default: <results file without .h5>_plots next to it):
  samples.png               samples vs reference, one panel per sampler
  loss.png                  the training loss curve (log y)
  loss_by_t.png             the last logged window's loss per bin of training time (log y)
  metrics.png               one bar chart per metric, one bar per sampler (error bars: std over
                            the sampler's repeats), with the floor (fresh data) as a band
  trajectory_<sampler>.gif  the denoising trajectory, for each sampler that kept one
and, for image samples,
  grid_<sampler>.png        the first 64 samples as one picture, pixel for pixel (enlarged)
  grid_reference.png        the same for the reference (the data the samples are scored against)
and prints the files written. Images are samples (N, C, H, W) (C = 1 or 3; (N, H, W) is one
channel), or samples stored flattened, (N, C*H*W), when --image-shape C,H,W says so or the
run's data set says so itself (digits, mnist, fashion_mnist with `flatten: true`). The image
data sets scale pixels to [-1, 1], so images in that range are drawn from -1 (black) to +1
(white), clipped, as tools/grid does; images outside it are stretched between their 1st and
99th percentiles. Needs Debian's python3-h5py, python3-numpy, python3-matplotlib and
python3-pil (the GIF and grid writer).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis"))

import numpy as np  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import animation  # noqa: E402

from diffusion_results import ResultsError, Run, load  # noqa: E402

REF_COLOR = "0.7"
SAMPLE_COLOR = "tab:blue"
FLOOR_COLOR = "0.35"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "sampler"


def _points(a: np.ndarray) -> np.ndarray:
    """(N, D...) as (N, 2) for a scatter plot: the first two coordinates (D == 1: x vs 0)."""
    a = np.asarray(a, dtype=float).reshape(a.shape[0], -1)
    if a.shape[1] == 1:
        return np.concatenate([a, np.zeros_like(a)], axis=1)
    return a[:, :2]


def _is_image(a: np.ndarray) -> bool:
    return a.ndim == 4 or (a.ndim == 3 and a.shape[-1] > 3)


# The image data sets' sizes (plugins/image_data), for their samples stored flattened.
IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28)}


def flat_image_shape(run: Run, given=None):
    """(C, H, W) of a run whose image samples are stored flattened, (N, C*H*W): `given`
    (--image-shape), else the data set's own size when its config says `flatten: true`;
    None for samples that are points (or already images)."""
    if given is not None:
        return tuple(given)
    data = run.config.get("dataset") if isinstance(run.config, dict) else None
    if isinstance(data, dict) and data.get("flatten") and data.get("type") in IMAGE_SHAPES:
        return IMAGE_SHAPES[data["type"]]
    return None


def with_image_shape(run: Run, shape) -> Run:
    """The run with its samples, trajectories and reference reshaped to images (N, C, H, W)
    where they hold C*H*W values per row; the file's arrays are left as they are."""
    if shape is None:
        return run
    d = int(np.prod(shape))

    def reshape(a, lead):
        if a is None or a.ndim != lead + 1 or a.shape[-1] != d:
            return a
        return a.reshape(a.shape[:lead] + tuple(shape))
    samples = {k: dataclasses.replace(s, x=reshape(s.x, 1), trajectory=reshape(s.trajectory, 2))
               for k, s in run.samples.items()}
    return dataclasses.replace(run, samples=samples, reference=reshape(run.reference, 1))


def _in_unit_range(run: Run) -> bool:
    """True when the data lie in [-1, 1] (the image data sets' scaling): images are then drawn
    on that fixed scale, so a sample's brightness is comparable with the data's."""
    ref = run.reference
    return ref is None or (np.all(np.isfinite(ref)) and ref.min() >= -1.0 and ref.max() <= 1.0)


def _limits(arrays, pad=0.08):
    """Axis limits covering the bulk (0.5-99.5 percentiles) of all the given point sets."""
    pts = np.concatenate([_points(a) for a in arrays if a is not None and len(a)], axis=0)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        return (-1, 1), (-1, 1)
    lo = np.percentile(pts, 0.5, axis=0)
    hi = np.percentile(pts, 99.5, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad * span, hi + pad * span
    return (lo[0], hi[0]), (lo[1], hi[1])


def _panel_height(xlim, ylim, width: float) -> float:
    """The height of an equal-aspect panel `width` inches wide showing xlim x ylim."""
    aspect = (ylim[1] - ylim[0]) / max(xlim[1] - xlim[0], 1e-9)
    return float(np.clip(width * aspect, 0.5 * width, 1.5 * width))


def _image_grid(a: np.ndarray, n: int = 8, unit_range: bool = True, pad: int = 0) -> np.ndarray:
    """The first n*n images of (N, C, H, W) or (N, H, W) tiled into one (nH, nW[, 3]) image with
    values in [0, 1]: [-1, 1] mapped to [0, 1] and clipped (unit_range), or the 1st to 99th
    percentile stretched to it. `pad` pixels of mid-gray between and around the images."""
    a = np.asarray(a, dtype=float)
    if a.ndim == 3:
        a = a[:, None]
    k = min(n * n, a.shape[0])
    n = int(np.ceil(np.sqrt(k)))
    c, h, w = a.shape[1:]
    rows = int(np.ceil(k / n))
    grid = np.full((c, pad + rows * (h + pad), pad + n * (w + pad)), np.nan)
    for i in range(k):
        r, q = divmod(i, n)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top:top + h, left:left + w] = a[i]
    if unit_range:
        grid = (grid + 1.0) / 2.0
    else:
        lo, hi = np.nanpercentile(grid, 1), np.nanpercentile(grid, 99)
        grid = (grid - lo) / max(hi - lo, 1e-8)
    grid = np.where(np.isnan(grid), 0.5, np.clip(grid, 0, 1))  # padding: mid-gray
    return grid[0] if c == 1 else np.moveaxis(grid[:3], 0, -1)


def _to_bytes(grid: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255, as tools/grid: round(255 v)."""
    return np.round(np.nan_to_num(grid) * 255.0).clip(0, 255).astype(np.uint8)


def plot_image_grid(a: np.ndarray, path: str, unit_range: bool, n: int = 8) -> str:
    """The first n*n images as one PNG, pixel for pixel (1-pixel mid-gray gaps), enlarged by a
    whole factor so that small images (8x8 digits) are visible."""
    from PIL import Image
    g = _to_bytes(_image_grid(a, n, unit_range, pad=1))
    scale = max(1, 256 // max(g.shape[0], 1))
    g = np.kron(g, np.ones((scale, scale) + (1,) * (g.ndim - 2), dtype=np.uint8))
    Image.fromarray(g, mode="L" if g.ndim == 2 else "RGB").save(path)
    return path


def _scatter(ax, pts: np.ndarray, color, size: float, label: str, alpha: float = 0.6) -> None:
    ax.scatter(pts[:, 0], pts[:, 1], s=size, c=color, alpha=alpha, linewidths=0, label=label,
               rasterized=True)


def plot_samples(run: Run, out: str) -> str:
    names = list(run.samples)
    n = len(names)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    ref = run.reference
    points = [k for k in names if not _is_image(run.samples[k].x)]
    width = 5.5 if cols == 1 else 4.5 if cols == 2 else 4.0
    height = width
    if points:
        ref_pts = ref if ref is not None and not _is_image(ref) else None
        xlim, ylim = _limits([ref_pts] + [run.samples[k].x for k in points])
        height = _panel_height(xlim, ylim, width)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, (height + 0.8) * rows + 0.4),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        s = run.samples[name]
        metric = run.metrics.get(name, {})
        items = [f"{m} {v:.3g}" for m, v in sorted(metric.items())]
        sub = "\n".join("  ".join(items[i:i + 3]) for i in range(0, len(items), 3))
        head = f"{name}" + (f" ({s.type})" if s.type and s.type != name else "")
        head += f", nfe {s.nfe}" if s.nfe is not None else ""
        ax.set_title(head + ("\n" + sub if sub else ""), fontsize=9)
        if name not in points:
            g = _image_grid(s.x, unit_range=_in_unit_range(run), pad=1)
            ax.imshow(g, cmap="gray" if g.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_axis_off()
            continue
        size = max(1.0, min(6.0, 6000.0 / max(len(s.x), 1)))
        if ref_pts is not None and _points(ref_pts).shape[1] == _points(s.x).shape[1]:
            _scatter(ax, _points(ref_pts), REF_COLOR, size, f"reference ({len(ref)})", 0.5)
        _scatter(ax, _points(s.x), SAMPLE_COLOR, size, f"samples ({len(s.x)})")
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal", adjustable="box")
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper right", fontsize=7, markerscale=3, framealpha=0.8)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.suptitle(f"{run.name}: samples vs reference", fontsize=11)
    fig.tight_layout()
    path = os.path.join(out, "samples.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_loss(run: Run, out: str) -> str:
    step, loss = np.asarray(run.train_step), np.asarray(run.train_loss, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ok = np.isfinite(loss) & (loss > 0)
    ax.plot(step[ok], loss[ok], color="tab:blue", lw=0.8, alpha=0.45 if ok.sum() > 40 else 1.0,
            label="loss (mean of each logged window)")
    if ok.sum() > 40:  # a running mean over ~5% of the points makes the trend readable
        k = max(3, int(ok.sum() * 0.05))
        smooth = np.convolve(loss[ok], np.ones(k) / k, mode="valid")
        ax.plot(step[ok][k - 1:], smooth, color="tab:blue", lw=1.8, label=f"running mean of {k}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    final = f", final {loss[ok][-1]:.4g}" if ok.any() else ""
    ax.set_title(f"{run.name}: training loss{final}", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "loss.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_loss_by_t(run: Run, out: str, context: int = 4) -> str:
    """Where in time the model is still bad: the last window's loss per bin of training time,
    over a few earlier windows (fainter) to show how it got there."""
    lbt = np.asarray(run.loss_by_t, dtype=float)
    rows, bins = lbt.shape
    edges = run.loss_by_t_edges
    if edges is None or len(edges) != bins + 1:
        edges = np.arange(bins + 1, dtype=float)  # no usable edges: bin numbers
    centres = 0.5 * (np.asarray(edges[:-1], dtype=float) + np.asarray(edges[1:], dtype=float))
    step = np.asarray(run.train_step)

    def label(i: int) -> str:
        return f"step {int(step[i])}" if len(step) == rows else f"window {i + 1}"
    lbt = np.where(lbt > 0, lbt, np.nan)  # log y: NaN (no sample) and <= 0 leave gaps

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    earlier = sorted({int(i) for i in np.linspace(0, rows - 1, context + 1)[:-1]} - {rows - 1})
    shades = plt.get_cmap("Blues")(np.linspace(0.3, 0.6, max(len(earlier), 1)))
    for c, i in zip(shades, earlier):
        ax.plot(centres, lbt[i], color=c, lw=0.9, alpha=0.7, label=label(i))
    ax.plot(centres, lbt[-1], color="tab:blue", lw=2.0, marker="o", ms=3,
            label=label(rows - 1) + " (last)")
    ax.set_yscale("log")
    ax.set_xlabel("time t of the path (bin centres)")
    ax.set_ylabel("mean loss in the bin")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{run.name}: training loss by time ({bins} bins)", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "loss_by_t.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_metrics(run: Run, out: str) -> str:
    """One bar per sampler, with its spread over repeats, against the floor: what fresh draws of
    the data score, so a bar is read as a distance from the best possible."""
    samplers = list(run.metrics)
    metrics = sorted({m for d in run.metrics.values() for m in d})
    n = len(metrics)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    width = max(2.6, 0.6 * len(samplers) + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.2 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")(np.arange(len(samplers)) % 10)
    floor_drawn = any_err = False
    for ax, m in zip(axes.flat, metrics):
        mv = [run.metric_values.get(s, {}).get(m) for s in samplers]
        vals = [run.metrics[s].get(m, np.nan) for s in samplers]
        # NaN: no error bar (and no cap) for a sampler run once
        errs = [v.std if v is not None and v.count > 1 else np.nan for v in mv]
        repeated = any(np.isfinite(errs))
        any_err |= repeated
        bars = ax.bar(range(len(samplers)), vals, color=colors,
                      yerr=errs if repeated else None, capsize=4 if repeated else 0,
                      error_kw={"elinewidth": 1.0, "ecolor": "0.2"})
        texts = ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], fontsize=7, padding=2)
        if repeated:  # bar_label sits on the bar's end: move each label past its error bar
            for text, v, e in zip(texts, vals, errs):
                if np.isfinite(v) and np.isfinite(e):
                    x, _ = text.xy
                    text.xy = (x, v + e if v >= 0 else v - e)
        f = run.floor.get(m)
        low = [v - (e if np.isfinite(e) else 0.0) for v, e in zip(vals, errs)]
        if f is not None and np.isfinite(f.mean):
            sd = f.std if np.isfinite(f.std) else 0.0
            # the band behind the bars, the line over them: visible whatever the bars' heights
            band = ax.axhspan(f.mean - sd, f.mean + sd, color=FLOOR_COLOR, alpha=0.2, lw=0,
                              zorder=0)
            line = ax.axhline(f.mean, color=FLOOR_COLOR, lw=1.2, ls="--", zorder=3)
            floor_drawn = True
            low.append(f.mean - sd)
        if any(np.isfinite(v) and v < 0 for v in low):  # e.g. unbiased MMD: show where 0 is
            ax.axhline(0.0, color="0.2", lw=0.6)
        ax.set_xticks(range(len(samplers)))
        ax.set_xticklabels(samplers, rotation=30 if len(samplers) > 3 else 0, fontsize=8)
        ax.set_title(m, fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    note = ["error bars: std over repeats"] if any_err else []
    if floor_drawn:
        floor = next(iter(run.floor.values()))
        note.append(f"band: floor mean +- std over {floor.count} fresh draws")
    fig.suptitle(f"{run.name}: metrics (lower is better)"
                 + ("\n" + "; ".join(note) if note else ""), fontsize=11 if not note else 10)
    if floor_drawn:
        fig.legend([(band, line)], ["floor (fresh data)"], loc="lower center", fontsize=8,
                   frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06 if floor_drawn else 0, 1, 1))
    path = os.path.join(out, "metrics.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_trajectory_gif(run: Run, name: str, out: str, hold: int = 4, fps: int = 4) -> str:
    s = run.samples[name]
    traj = s.trajectory
    k = traj.shape[0]
    times = s.trajectory_times
    image = _is_image(traj[0])
    unit = _in_unit_range(run)
    if image:
        fig, ax = plt.subplots(figsize=(4.2, 4.6))
        art = ax.imshow(_image_grid(traj[0], 6, unit, pad=1), cmap="gray", vmin=0, vmax=1,
                        interpolation="nearest")
        ax.set_axis_off()
    else:
        xlim, ylim = _limits([run.reference, s.x] + list(traj))
        fig, ax = plt.subplots(figsize=(5.0, _panel_height(xlim, ylim, 5.0) + 0.6))
        size = max(1.0, min(6.0, 6000.0 / max(traj.shape[1], 1)))
        if run.reference is not None:
            _scatter(ax, _points(run.reference), REF_COLOR, size, "reference", 0.35)
        p0 = _points(traj[0])
        art = ax.scatter(p0[:, 0], p0[:, 1], s=size, c=SAMPLE_COLOR, alpha=0.7, linewidths=0)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal", adjustable="box")
        ax.tick_params(labelsize=7)
    title = ax.set_title("", fontsize=10)
    fig.tight_layout()

    def frame(i: int):
        i = min(i, k - 1)  # the last frame is held for `hold` extra frames
        if image:
            art.set_data(_image_grid(traj[i], 6, unit, pad=1))
        else:
            art.set_offsets(_points(traj[i]))
        t = f"t = {times[i]:g}" if times is not None and i < len(times) else f"frame {i + 1}"
        title.set_text(f"{run.name} / {name}: {t}  ({i + 1}/{k})")
        return art, title

    anim = animation.FuncAnimation(fig, frame, frames=k + hold, blit=False)
    path = os.path.join(out, f"trajectory_{_safe(name)}.gif")
    anim.save(path, writer=animation.PillowWriter(fps=fps), dpi=90)
    plt.close(fig)
    return path


def plot_all(run: Run, out: str, image_shape=None) -> list:
    run = with_image_shape(run, flat_image_shape(run, image_shape))
    os.makedirs(out, exist_ok=True)
    written = []
    if run.samples:
        written.append(plot_samples(run, out))
    else:
        print(f"note: {run.path}: no /samples; skipping samples.png", file=sys.stderr)
    if run.train_loss.size:
        written.append(plot_loss(run, out))
    else:
        print(f"note: {run.path}: no /train/loss; skipping loss.png", file=sys.stderr)
    if run.loss_by_t is not None and run.loss_by_t.ndim == 2 and run.loss_by_t.size:
        written.append(plot_loss_by_t(run, out))
    if any(run.metrics.values()):
        written.append(plot_metrics(run, out))
    else:
        print(f"note: {run.path}: no /metrics; skipping metrics.png", file=sys.stderr)
    for name, s in run.samples.items():
        if s.trajectory is not None and s.trajectory.ndim >= 2 and s.trajectory.shape[0] > 0:
            written.append(plot_trajectory_gif(run, name, out))
    unit = _in_unit_range(run)
    images = [k for k, s in run.samples.items() if _is_image(s.x)]
    for name in images:
        written.append(plot_image_grid(run.samples[name].x,
                                       os.path.join(out, f"grid_{_safe(name)}.png"), unit))
    if images and run.reference is not None and _is_image(run.reference):
        written.append(plot_image_grid(run.reference, os.path.join(out, "grid_reference.png"), unit))
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Plot a diffusion toolkit results file.")
    ap.add_argument("results", help="results file (.h5) written by runexp")
    ap.add_argument("--out", help="output folder (default: <results>_plots next to the file)")
    ap.add_argument("--image-shape", metavar="C,H,W",
                    help="samples stored flattened, (N, C*H*W), are images of this shape")
    args = ap.parse_args(argv)
    shape = None
    if args.image_shape:
        try:
            shape = tuple(int(v) for v in args.image_shape.split(","))
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError
        except ValueError:
            ap.error(f"--image-shape {args.image_shape}: expected C,H,W (three positive integers)")
    try:
        run = load(args.results)
    except ResultsError as e:
        print(f"plot_results.py: error: {e}", file=sys.stderr)
        return 1
    if run.status != "complete":
        why = f": {run.error}" if run.error else ""
        print(f"warning: {args.results}: run status is '{run.status}'{why}; plotting what is there",
              file=sys.stderr)
    out = args.out or os.path.splitext(args.results)[0] + "_plots"
    for path in plot_all(run, out, shape):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
