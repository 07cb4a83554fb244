#!/usr/bin/env bash
# End-to-end test of the Python analysis tools (tools/analysis/diffusion_results.py and
# tools/plot_results.py): make a small two-sampler results file with runexp (one sampler
# repeated, so its metrics have a spread), load it, plot it, check the PNGs and the GIF, and
# check that a truncated copy fails with a clear error.
#
#   bash tests/analysis/test_plot_results.sh RUNEXP [SOURCE_DIR]
#
# Uses Debian's /usr/bin/python3 (h5py, numpy, matplotlib, PIL); set PYTHON to override.
# Exits 77 (skipped) when that Python lacks those packages.
set -euo pipefail

runexp=${1:?usage: test_plot_results.sh RUNEXP [SOURCE_DIR]}
src=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
py=${PYTHON:-/usr/bin/python3}
export PYTHONDONTWRITEBYTECODE=1  # keep __pycache__ out of the source tree
[ -x "$py" ] || py=$(command -v python3)

if ! "$py" -c "import h5py, numpy, matplotlib, PIL" 2>/dev/null; then
  echo "FAIL: $py lacks h5py/numpy/matplotlib/PIL (run tools/install_deps.sh)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/test_plot_results.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A tiny experiment: two samplers, one with a trajectory, one without but repeated twice.
cat > "$work/tiny.yaml" <<'EOF'
name: tiny_analysis
seed: 3
dataset: {type: moons, noise: 0.05}
network: {type: mlp, hidden: [32, 32], activation: silu,
          time_embedding: {type: sinusoidal, dim: 16}}
sde:     {type: ddpm, timesteps: 100, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}
loss:    {type: eps_mse}
train:   {steps: 200, batch_size: 64, optimizer: {type: adam, lr: 2.0e-3}, ema: 0.99,
          log_every: 10}
samplers:
  - {type: ddim, steps: 10, eta: 0.0, n: 200, trajectory: 5}
  - {type: ancestral, name: anc, n: 200, repeats: 2}
metrics: [w2, mmd]
EOF
"$runexp" "$work/tiny.yaml" --out "$work/run.h5" > "$work/runexp.log" 2>&1 \
  || { cat "$work/runexp.log" >&2; fail "runexp failed"; }
[ -s "$work/run.h5" ] || fail "runexp wrote no results file"

# 1. The loader.
PYTHONPATH="$src/tools/analysis" "$py" - "$work/run.h5" <<'EOF' || fail "loader checks"
import sys
import numpy as np
from diffusion_results import load, Run, Sampling, MetricValue
r = load(sys.argv[1])
assert isinstance(r, Run)
assert r.name == "tiny_analysis" and r.status == "complete" and r.seed == 3, (r.name, r.status, r.seed)
cfg = r.config
if isinstance(cfg, dict):
    assert cfg["train"]["steps"] == 200, cfg
else:
    assert "tiny_analysis" in cfg
assert set(r.timings) >= {"train_seconds", "total_seconds"}, r.timings
assert r.train_step.ndim == 1 and r.train_loss.shape == r.train_step.shape and r.train_loss.size > 1
assert np.all(np.isfinite(r.train_loss))
assert set(r.samples) == {"ddim", "anc"}, r.samples.keys()
d = r.samples["ddim"]
assert isinstance(d, Sampling) and d.x.shape == (200, 2) and d.type == "ddim" and d.nfe == 10
assert d.trajectory is not None and d.trajectory.shape == (5, 200, 2), d.trajectory.shape
assert d.trajectory_times is not None and len(d.trajectory_times) == 5
assert r.samples["anc"].trajectory is None and r.samples["anc"].type == "ancestral"
assert r.samples["anc"].repeats == 2 and d.repeats == 1, (r.samples["anc"].repeats, d.repeats)
for s in r.samples.values():  # the built-in samplers report nothing else and use one model
    assert s.extras == {} and s.nfe_by_model == {}, (s.type, s.extras.keys(), s.nfe_by_model)
# The metrics: the samplers' means, without the floor ("data").
assert set(r.metrics) == {"ddim", "anc"} and set(r.metrics["ddim"]) == {"w2", "mmd"}, r.metrics
assert all(isinstance(v, float) for m in r.metrics.values() for v in m.values())
assert set(r.metric_values) == set(r.metrics), r.metric_values.keys()
for m in ("w2", "mmd"):
    v = r.metric_values["anc"][m]
    assert isinstance(v, MetricValue) and v.count == 2 and len(v.values) == 2, v
    assert np.isfinite(v.std) and v.std >= 0, v
    assert np.isclose(v.mean, np.mean(v.values), rtol=1e-5, atol=1e-6), v
    assert v.mean == r.metrics["anc"][m], (v.mean, r.metrics["anc"][m])
    one = r.metric_values["ddim"][m]
    assert one.count == 1 and one.std == 0 and len(one.values) == 1, one
# The floor: fresh data against the same reference, 5 draws by default.
assert set(r.floor) == {"w2", "mmd"}, r.floor.keys()
for m, v in r.floor.items():
    assert v.count == 5 and len(v.values) == 5, (m, v)
    assert np.isfinite(v.mean) and np.isfinite(v.std) and v.std >= 0, (m, v)
# The loss by time: one row per logged window, one column per bin.
lbt, edges = r.loss_by_t, r.loss_by_t_edges
assert lbt is not None and edges is not None and lbt.ndim == 2 and edges.ndim == 1
assert lbt.shape == (len(r.train_step), len(edges) - 1), (lbt.shape, r.train_step.shape, edges.shape)
assert np.isfinite(lbt).any() and np.all(np.diff(edges) > 0), edges
assert r.codec == "standardize", r.codec
assert r.models == {}, r.models.keys()
assert r.reference is not None and r.reference.shape[1] == 2
assert r.model and r.ema and set(r.model) == set(r.ema)
assert all(isinstance(v, np.ndarray) for v in r.model.values())
print("loader ok:", len(r.model), "arrays,", r.train_loss.size, "loss rows,",
      lbt.shape[1], "time bins; floor w2", round(r.floor["w2"].mean, 4))
EOF

# The summary: the floor on its own line next to the samplers' metrics.
"$py" "$src/tools/analysis/diffusion_results.py" "$work/run.h5" > "$work/summary.out" \
  || fail "diffusion_results.py failed"
cat "$work/summary.out"
grep -q "^ *floor (fresh data, 5 draws" "$work/summary.out" || fail "the summary has no floor line"
grep -q "^ *anc .* +- " "$work/summary.out" || fail "the summary has no spread for anc's repeats"

# 2. The plot command.
"$py" "$src/tools/plot_results.py" "$work/run.h5" --out "$work/plots" > "$work/plot.out" \
  || fail "plot_results.py failed"
cat "$work/plot.out"
for f in samples.png loss.png loss_by_t.png metrics.png trajectory_ddim.gif; do
  grep -qx "$work/plots/$f" "$work/plot.out" || fail "plot_results.py did not report $f"
done
[ ! -e "$work/plots/trajectory_anc.gif" ] || fail "a GIF for a sampler without a trajectory"
"$py" - "$work/plots" <<'EOF' || fail "image checks"
import os, sys
from PIL import Image
d = sys.argv[1]
for name in ("samples.png", "loss.png", "loss_by_t.png", "metrics.png"):
    p = os.path.join(d, name)
    with open(p, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{p}: not a PNG"
    with Image.open(p) as im:
        im.verify()
    with Image.open(p) as im:
        assert im.size[0] > 100 and im.size[1] > 100, (p, im.size)
p = os.path.join(d, "trajectory_ddim.gif")
with open(p, "rb") as f:
    assert f.read(6) == b"GIF89a", f"{p}: no GIF89a header"
with Image.open(p) as im:
    assert im.format == "GIF" and im.n_frames > 1, (p, im.n_frames)
    print("gif ok:", im.n_frames, "frames", im.size)
EOF

# 3. A truncated copy: a clear error naming the file, non-zero exit, no traceback.
size=$(stat -c %s "$work/run.h5")
head -c $((size / 2)) "$work/run.h5" > "$work/half.h5"
check_bad() {  # check_bad NAME COMMAND...: must exit non-zero with a clear error, no traceback
  local name=$1; shift
  if "$@" > "$work/bad.out" 2> "$work/bad.err"; then fail "$name accepted a truncated file"; fi
  cat "$work/bad.err"
  grep -q "half.h5" "$work/bad.err" || fail "$name: the error does not name the file"
  grep -qi "corrupt\|truncated" "$work/bad.err" || fail "$name: the error does not say what is wrong"
  ! grep -q "Traceback" "$work/bad.err" || fail "$name: a traceback instead of an error"
}
check_bad diffusion_results.py "$py" "$src/tools/analysis/diffusion_results.py" "$work/half.h5"
check_bad plot_results.py "$py" "$src/tools/plot_results.py" "$work/half.h5" --out "$work/bad"
[ ! -e "$work/bad" ] || fail "plot_results.py made an output folder for a truncated file"
PYTHONPATH="$src/tools/analysis" "$py" - "$work/half.h5" <<'EOF' || fail "load() on a truncated file"
import sys
from diffusion_results import load, ResultsError
try:
    load(sys.argv[1])
except ResultsError as e:
    assert sys.argv[1] in str(e), str(e)
else:
    raise SystemExit("load() accepted a truncated file")
EOF

# 4. Not a results file at all.
echo "hello" > "$work/text.h5"
! "$py" "$src/tools/plot_results.py" "$work/text.h5" --out "$work/bad" 2> "$work/bad.err" \
  || fail "plot_results.py accepted a text file"
grep -q "not an HDF5 file" "$work/bad.err" || fail "text file: unclear error: $(cat "$work/bad.err")"

echo "PASS: python analysis"
