"""Load a diffusion toolkit results file (one HDF5 file per run) into plain Python objects.

    from diffusion_results import load
    run = load("results/ddim_moons.h5")
    run.status, run.seed, run.config["train"]["steps"]
    run.train_step, run.train_loss                 # numpy 1-D arrays
    run.samples["ddim"].x                          # (N, D...) in data coordinates
    run.samples["ddim"].trajectory                 # (K, N, D...) or None
    run.metrics["ddim"]["w2"]                      # float
    run.model["net.layers.0.weight"]               # numpy, PyTorch state_dict names

The layout is the one documented in README.md ("The results file"). Needs Debian's
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

__all__ = ["Run", "Sampling", "ResultsError", "load"]

TIMING_KEYS = ("train_seconds", "sample_seconds", "metric_seconds", "total_seconds")


class ResultsError(Exception):
    """The file is missing, is not HDF5, is corrupt or is not a toolkit results file."""


@dataclass
class Sampling:
    """One sampler's output: /samples/<name>."""
    x: np.ndarray
    trajectory: Optional[np.ndarray] = None        # (K, N, D...) or None
    trajectory_times: Optional[np.ndarray] = None  # (K,) or None
    nfe: Optional[int] = None
    seconds: Optional[float] = None
    type: Optional[str] = None


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
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    reference: Optional[np.ndarray] = None
    data_mean: Optional[np.ndarray] = None
    data_std: Optional[np.ndarray] = None
    model: Dict[str, np.ndarray] = field(default_factory=dict)
    ema: Dict[str, np.ndarray] = field(default_factory=dict)

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


def _arrays(group: Any) -> Dict[str, np.ndarray]:
    """Every dataset below `group`, keyed by its path relative to the group."""
    out: Dict[str, np.ndarray] = {}
    if group is None:
        return out

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
    group.visititems(visit)
    return out


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

    if "data" in f:
        d = f["data"]
        run.reference = d["reference"][()] if "reference" in d else None
        run.data_mean = d["mean"][()] if "mean" in d else None
        run.data_std = d["std"][()] if "std" in d else None

    for name, g in (f["samples"].items() if "samples" in f else []):
        if not isinstance(g, h5py.Group) or "x" not in g:
            continue
        ga = {k: _py(v) for k, v in g.attrs.items()}
        traj = g["trajectory"][()] if "trajectory" in g else None
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
        )

    for sampler, g in (f["metrics"].items() if "metrics" in f else []):
        if isinstance(g, h5py.Group):
            run.metrics[sampler] = {m: float(np.asarray(ds[()]).reshape(-1)[0])
                                    for m, ds in g.items() if isinstance(ds, h5py.Dataset)}

    run.model = _arrays(f.get("model"))
    run.ema = _arrays(f.get("ema"))
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
    print(f"{run.path}: {run.name} (status {run.status}, seed {run.seed})")
    if run.error:
        print(f"  error: {run.error}")
    if run.timings:
        print("  time: " + ", ".join(f"{k[:-8]} {v:.2f} s" for k, v in run.timings.items()))
    if run.train_loss.size:
        print(f"  train: {run.train_loss.size} logged windows up to step "
              f"{int(run.train_step[-1])}, final loss {run.train_loss[-1]:.5g}")
    for name, s in run.samples.items():
        traj = "" if s.trajectory is None else f", trajectory {s.trajectory.shape}"
        ms = "  ".join(f"{m} {v:.5g}" for m, v in sorted(run.metrics.get(name, {}).items()))
        print(f"  {name} ({s.type}, nfe {s.nfe}): x {s.x.shape}{traj}  {ms}")
    print(f"  model: {len(run.model)} arrays, "
          f"{sum(v.size for v in run.model.values())} parameters; ema: {len(run.ema)} arrays")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
