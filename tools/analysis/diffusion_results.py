"""Load a diffusion toolkit results file (one HDF5 file per run) into plain Python objects.

    from diffusion_results import load
    run = load("results/ddim_moons.h5")
    run.status, run.seed, run.config["train"]["steps"]
    run.train_step, run.train_loss                 # numpy 1-D arrays
    run.samples["ddim"].x                          # (N, D...) in data coordinates
    run.samples["ddim"].trajectory                 # (K, N, D...) or None
    run.metrics["ddim"]["w2"]                      # float: the mean over the sampler's repeats
    run.metric_values["ddim"]["w2"].std            # MetricValue(mean, std, values, count)
    run.floor["w2"].mean                           # the same metric for fresh data: the floor
    run.samples["smc"].extras["ess"]               # anything else the sampler reported
    run.loss_by_t[-1], run.loss_by_t_edges         # last window's loss per bin of training time
    run.model["net.layers.0.weight"]               # numpy, PyTorch state_dict names
    run.models["teacher"]["net.layers.0.weight"]   # other named models of the experiment

The layout is the one documented in README.md ("The results file"); files of version 1 (no
floor, extras, loss by time or named models) load with those left empty. Needs Debian's
python3-h5py and python3-numpy; python3-yaml (optional) parses the config into a dict,
otherwise `config` is the raw YAML text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

import numpy as np

try:
    import h5py
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError("diffusion_results needs h5py: apt-get install python3-h5py") from e

try:
    import yaml as _yaml
except ImportError:  # pragma: no cover - depends on the machine
    _yaml = None

__all__ = ["Run", "Sampling", "MetricValue", "ResultsError", "load"]

TIMING_KEYS = ("train_seconds", "sample_seconds", "metric_seconds", "total_seconds")
FLOOR_GROUP = "data"  # /metrics/data: the metric floor, never a sampler


class ResultsError(Exception):
    """The file is missing, is not HDF5, is corrupt or is not a toolkit results file."""


@dataclass(frozen=True, eq=False)
class MetricValue:
    """One metric over repeats (or floor draws): the spread says whether a difference is noise.

    `values` is read-only; equality is identity (arrays have no single truth value)."""
    mean: float
    std: float = 0.0
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    count: int = 1


@dataclass
class Sampling:
    """One sampler's output: /samples/<name>."""
    x: np.ndarray
    trajectory: Optional[np.ndarray] = None        # (K, N, D...) or None
    trajectory_times: Optional[np.ndarray] = None  # (K,) or None
    nfe: Optional[int] = None
    seconds: Optional[float] = None
    type: Optional[str] = None
    extras: Dict[str, np.ndarray] = field(default_factory=dict)  # other datasets, as written
    repeats: int = 1                                # x is repeat 0's; metrics average them all
    nfe_by_model: Dict[str, int] = field(default_factory=dict)   # nfe_<slot>: other models


@dataclass
class Run:
    path: str
    name: str
    status: str
    seed: Optional[int]
    config: Union[Dict[str, Any], str]
    config_text: str = ""
    version: Optional[str] = None
    error: Optional[str] = None
    timings: Dict[str, float] = field(default_factory=dict)
    attrs: Dict[str, Any] = field(default_factory=dict)  # every root attribute, converted
    train_step: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    train_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    samples: Dict[str, Sampling] = field(default_factory=dict)
    loss_by_t: Optional[np.ndarray] = None        # (rows of train_step, bins); NaN: no sample
    loss_by_t_edges: Optional[np.ndarray] = None  # (bins + 1,) in the path's time units
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)  # means; no floor
    metric_values: Dict[str, Dict[str, MetricValue]] = field(default_factory=dict)
    floor: Dict[str, MetricValue] = field(default_factory=dict)  # fresh data vs the reference
    floor_n: Optional[int] = None                 # points per floor draw
    reference: Optional[np.ndarray] = None
    codec: Optional[str] = None                   # /data codec: standardize, identity, ...
    data_mean: Optional[np.ndarray] = None
    data_std: Optional[np.ndarray] = None
    model: Dict[str, np.ndarray] = field(default_factory=dict)
    ema: Dict[str, np.ndarray] = field(default_factory=dict)
    models: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)  # slot -> arrays

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def _py(v: Any) -> Any:
    """An HDF5 attribute value as a plain Python value (str, int, float, or numpy array)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO" and v.size == 1:
            return _py(v.reshape(-1)[0])
        return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _arrays(group: Any, skip: tuple = ()) -> Dict[str, np.ndarray]:
    """Every dataset below `group` (except the paths in `skip`), keyed by its path relative
    to the group."""
    out: Dict[str, np.ndarray] = {}
    if group is None:
        return out

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and name not in skip:
            out[name] = obj[()]
    group.visititems(visit)
    return out


def _metric(ds: "h5py.Dataset") -> MetricValue:
    """/metrics/<group>/<metric>: the mean, with its spread when the file has one (version 2)."""
    mean = float(np.asarray(ds[()]).reshape(-1)[0])
    at = {k: _py(v) for k, v in ds.attrs.items()}
    values = np.atleast_1d(np.asarray(at["values"], dtype=np.float64)) if "values" in at \
        else np.array([mean])
    values.setflags(write=False)
    return MetricValue(mean=mean, std=float(at.get("std", 0.0)), values=values,
                       count=int(at.get("count", values.size)))


def _read(f: "h5py.File", path: str) -> Run:
    a = {k: _py(v) for k, v in f.attrs.items()}
    if "status" not in a or ("config" not in a and "train" not in f and "samples" not in f):
        raise ResultsError(
            f"{path}: not a diffusion results file (HDF5, but no root 'status'/'config' "
            f"attributes; root has attributes {sorted(a)} and groups {sorted(f.keys())})")

    config_text = a.get("config", "") or ""
    config: Union[Dict[str, Any], str] = config_text
    if _yaml is not None and config_text:
        try:
            parsed = _yaml.safe_load(config_text)
            if isinstance(parsed, dict):
                config = parsed
        except _yaml.YAMLError:
            config = config_text  # keep the text; the file's data is still usable

    seed = a.get("seed")
    run = Run(
        path=path,
        name=str(a.get("name", os.path.splitext(os.path.basename(path))[0])),
        status=str(a["status"]),
        seed=int(seed) if seed is not None else None,
        config=config,
        config_text=config_text,
        version=str(a["version"]) if "version" in a else None,
        error=a.get("error"),
        timings={k: float(a[k]) for k in
                 [k for k in TIMING_KEYS if k in a] +
                 sorted(k for k in a if k.endswith("_seconds") and k not in TIMING_KEYS)
                 if np.ndim(a[k]) == 0},
        attrs=a,
    )

    if "train" in f:
        t = f["train"]
        if "step" in t:
            run.train_step = np.asarray(t["step"][()])
        if "loss" in t:
            run.train_loss = np.asarray(t["loss"][()])
        if run.train_step.size == 0 and run.train_loss.size:
            run.train_step = np.arange(1, run.train_loss.size + 1)
        if "loss_by_t" in t:
            run.loss_by_t = np.asarray(t["loss_by_t"][()], dtype=np.float64)
            if run.loss_by_t.ndim == 1:  # a single logged window
                run.loss_by_t = run.loss_by_t[None, :]
        if "loss_by_t_edges" in t:
            run.loss_by_t_edges = np.asarray(t["loss_by_t_edges"][()], dtype=np.float64)

    if "data" in f:
        d = f["data"]
        codec = _py(d.attrs.get("codec"))
        run.codec = str(codec) if codec is not None else None
        run.reference = d["reference"][()] if "reference" in d else None
        run.data_mean = d["mean"][()] if "mean" in d else None
        run.data_std = d["std"][()] if "std" in d else None

    for name, g in (f["samples"].items() if "samples" in f else []):
        if not isinstance(g, h5py.Group) or "x" not in g:
            continue
        ga = {k: _py(v) for k, v in g.attrs.items()}
        traj = g["trajectory"][()] if "trajectory" in g else None
        nfe_by_model = {k[4:]: int(v) for k, v in sorted(ga.items())
                        if k.startswith("nfe_") and len(k) > 4 and np.ndim(v) == 0}
        times = ga.get("trajectory_times")
        if times is None and traj is not None:  # accept the attribute on the dataset too
            times = _py(g["trajectory"].attrs.get("trajectory_times"))
        run.samples[name] = Sampling(
            x=g["x"][()],
            trajectory=traj,
            trajectory_times=np.asarray(times, dtype=float) if times is not None else None,
            nfe=int(ga["nfe"]) if "nfe" in ga else None,
            seconds=float(ga["seconds"]) if "seconds" in ga else None,
            type=str(ga["type"]) if "type" in ga else None,
            extras=_arrays(g, skip=("x", "trajectory")),
            repeats=int(ga.get("repeats", 1)),
            nfe_by_model=nfe_by_model,
        )

    # /metrics/data is the floor; a version-1 file could still have a sampler named "data".
    floor_group = FLOOR_GROUP if FLOOR_GROUP not in run.samples else None
    for group, g in (f["metrics"].items() if "metrics" in f else []):
        if not isinstance(g, h5py.Group):
            continue
        values = {m: _metric(ds) for m, ds in g.items() if isinstance(ds, h5py.Dataset)}
        if group == floor_group:
            run.floor = values
            n = _py(g.attrs.get("n"))
            run.floor_n = int(n) if n is not None else None
        else:
            run.metric_values[group] = values
            run.metrics[group] = {m: v.mean for m, v in values.items()}

    run.model = _arrays(f.get("model"))
    run.ema = _arrays(f.get("ema"))
    run.models = {slot: _arrays(g) for slot, g in (f["models"].items() if "models" in f else [])
                  if isinstance(g, h5py.Group)}
    return run


def load(path: Union[str, os.PathLike]) -> Run:
    """Read a whole results file. Raises ResultsError naming the path and the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ResultsError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ResultsError(f"{path}: is a directory, not a results file")
    size = os.path.getsize(path)
    if size == 0:
        raise ResultsError(f"{path}: empty file (0 bytes), not a results file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as e:
        raise ResultsError(f"{path}: cannot read: {e}") from e
    if not is_hdf5:
        raise ResultsError(f"{path}: not an HDF5 file (no HDF5 signature; {size} bytes)")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path)
    except ResultsError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
        raise ResultsError(
            f"{path}: corrupt or truncated results file ({size} bytes): "
            f"{type(e).__name__}: {e}") from e


def _cell(v: Optional[MetricValue]) -> tuple:
    """A metric for the summary table: the mean, and the spread when there is one."""
    if v is None:
        return "-", ""
    return f"{v.mean:.4g}", (f" +- {v.std:.2g}" if v.count > 1 else "")


def _shapes(arrays: Dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in sorted(arrays.items()))


def _main(argv: Optional[list] = None) -> int:
    """`python3 diffusion_results.py RESULTS.h5`: print a summary of a run."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: diffusion_results.py RESULTS.h5", file=sys.stderr)
        return 2
    try:
        run = load(args[0])
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    version = f", version {run.version}" if run.version else ""
    print(f"{run.path}: {run.name} (status {run.status}, seed {run.seed}{version})")
    if run.error:
        print(f"  error: {run.error}")
    if run.timings:
        print("  time: " + ", ".join(f"{k[:-8]} {v:.2f} s" for k, v in run.timings.items()))
    if run.train_loss.size:
        print(f"  train: {run.train_loss.size} logged windows up to step "
              f"{int(run.train_step[-1])}, final loss {run.train_loss[-1]:.5g}")
    if run.loss_by_t is not None and run.loss_by_t.size:
        last = run.loss_by_t[-1]
        edges = run.loss_by_t_edges
        span = f" over t {edges[0]:g}..{edges[-1]:g}" if edges is not None and edges.size else ""
        print(f"  loss by time: {run.loss_by_t.shape[1]} bins{span}; last window "
              + (f"{np.nanmin(last):.5g} to {np.nanmax(last):.5g} across bins"
                 if np.isfinite(last).any() else "has no samples"))
    data = ([f"codec {run.codec}"] if run.codec else []) + \
        ([f"reference {run.reference.shape}"] if run.reference is not None else [])
    if data:
        print("  data: " + ", ".join(data))
    for name, s in run.samples.items():
        traj = "" if s.trajectory is None else f", trajectory {s.trajectory.shape}"
        nfe = "".join(f", nfe_{k} {v}" for k, v in s.nfe_by_model.items())
        reps = f", {s.repeats} repeats" if s.repeats > 1 else ""
        print(f"  {name} ({s.type}, nfe {s.nfe}{nfe}{reps}): x {s.x.shape}{traj}")
        if s.extras:
            print(f"    extras: {_shapes(s.extras)}")
    # The metrics as a table, one row per sampler and the floor last, to read them against it.
    rows = [(name, run.metric_values[name]) for name in run.metric_values]
    if run.floor:
        draws = max(v.count for v in run.floor.values())
        of = f" of {run.floor_n}" if run.floor_n else ""
        rows.append((f"floor (fresh data, {draws} draws{of})", run.floor))
    names = sorted({m for _, d in rows for m in d})
    if rows and names:
        cells = [[_cell(d.get(m)) for m in names] for _, d in rows]
        lw = max(len(label) for label, _ in rows)
        mw = [max(len(c[i][0]) for c in cells) for i in range(len(names))]
        sw = [max(len(c[i][1]) for c in cells) for i in range(len(names))]
        print("  metrics (mean +- std over repeats):")
        print("    " + " " * lw + "".join(f"  {m:>{a + b}}" for m, a, b in zip(names, mw, sw)))
        for (label, _), c in zip(rows, cells):
            print(f"    {label:<{lw}}"
                  + "".join(f"  {v:>{a}}{e:<{b}}" for (v, e), a, b in zip(c, mw, sw)).rstrip())
    print(f"  model: {len(run.model)} arrays, "
          f"{sum(v.size for v in run.model.values())} parameters; ema: {len(run.ema)} arrays")
    for slot, arrays in run.models.items():
        print(f"  models/{slot}: {len(arrays)} arrays, "
              f"{sum(v.size for v in arrays.values())} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
