#!/usr/bin/env bash
# tools/plot_results.py on image samples: results files made here with h5py (no runexp, so it
# runs in a second), then checked pixel for pixel.
#   1. images (N, C, H, W) in [-1, 1]: grid_<sampler>.png and grid_reference.png hold each
#      image's pixels at round(255 (v + 1) / 2) (values outside [-1, 1] clipped), enlarged by
#      a whole factor, with mid-gray gaps; the trajectory GIF has its frames;
#   2. a run of the digits stored flattened (dataset: {type: digits, flatten: true}), (N, 64):
#      drawn as 8x8 images, or with --image-shape 1,4,16 as 4x16 ones; a bad --image-shape is a
#      usage error;
#   3. points (N, 2): no grids.
#
#   bash tests/analysis/test_plot_images.sh [SOURCE_DIR]
set -euo pipefail

src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
py=${PYTHON:-/usr/bin/python3}
export PYTHONDONTWRITEBYTECODE=1
[ -x "$py" ] || py=$(command -v python3)
if ! "$py" -c "import h5py, numpy, matplotlib, PIL" 2>/dev/null; then
  echo "FAIL: $py lacks h5py/numpy/matplotlib/PIL (run tools/install_deps.sh)" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/test_plot_images.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$py" - "$work" <<'EOF_PY' || fail "writing the test files"
import sys, h5py, numpy as np
w = sys.argv[1]
rng = np.random.default_rng(0)

def results(path, config, samples, reference, trajectory=None):
    with h5py.File(path, "w") as f:
        f.attrs["version"] = "2"
        f.attrs["status"] = "complete"
        f.attrs["name"] = "images"
        f.attrs["config"] = config
        f.create_dataset("data/reference", data=reference.astype(np.float32))
        g = f.create_group("samples/img")
        g.attrs["type"] = "ancestral"
        g.create_dataset("x", data=samples.astype(np.float32))
        if trajectory is not None:
            g.create_dataset("trajectory", data=trajectory.astype(np.float32))
            g.attrs["trajectory_times"] = np.linspace(999, 0, trajectory.shape[0])

# 1. ten 1x4x5 images, one value outside [-1, 1] on each side
x = rng.uniform(-1, 1, size=(10, 1, 4, 5))
x[0, 0, 0, 0], x[1, 0, 0, 0] = 3.0, -2.5
np.save(f"{w}/x.npy", x)
ref = rng.uniform(-1, 1, size=(12, 1, 4, 5))
np.save(f"{w}/ref.npy", ref)
traj = np.stack([rng.normal(size=x.shape), 0.5 * x, x])
results(f"{w}/img.h5", "name: images\ndataset: {type: hdf5, path: a.h5}\n", x, ref, traj)
# 2. digits stored flattened
flat = rng.uniform(-1, 1, size=(9, 64))
np.save(f"{w}/flat.npy", flat)
results(f"{w}/flat.h5", "name: flat\ndataset: {type: digits, flatten: true}\n", flat, flat[:5])
# 3. points
results(f"{w}/points.h5", "name: pts\ndataset: {type: moons}\n", rng.normal(size=(50, 2)), rng.normal(size=(50, 2)))
EOF_PY

"$py" "$src/tools/plot_results.py" "$work/img.h5" --out "$work/img" > "$work/img.out" 2> "$work/img.err" \
  || { cat "$work/img.err" >&2; fail "plot_results.py on images"; }
cat "$work/img.out"
for f in samples.png trajectory_img.gif grid_img.png grid_reference.png; do
  grep -qx "$work/img/$f" "$work/img.out" || fail "plot_results.py did not report $f"
done

"$py" - "$work" <<'EOF_PY' || fail "image grid checks"
import sys, numpy as np
from PIL import Image
w = sys.argv[1]

def check_grid(path, images, columns, rows):
    """Image i at row i // columns, column i % columns; 1-pixel gaps; enlarged s times."""
    with Image.open(path) as im:
        assert im.mode == "L", (path, im.mode)
        g = np.asarray(im)
    c, h, wd = images.shape[1:]
    height, width = 1 + rows * (h + 1), 1 + columns * (wd + 1)
    s = g.shape[0] // height
    assert s >= 1 and g.shape == (height * s, width * s), (path, g.shape, height, width)
    assert s == max(1, 256 // height), (path, s)
    expect = np.round(255 * (np.clip(images, -1, 1) + 1) / 2).astype(int)
    for i in range(images.shape[0]):
        top, left = 1 + (i // columns) * (h + 1), 1 + (i % columns) * (wd + 1)
        for y in range(h):
            for x in range(wd):
                got = int(g[(top + y) * s, (left + x) * s])
                assert got == expect[i, 0, y, x], (path, i, y, x, got, expect[i, 0, y, x])
    assert int(g[0, 0]) == 128, "the gaps are mid-gray"
    return g

x, ref = np.load(f"{w}/x.npy"), np.load(f"{w}/ref.npy")
g = check_grid(f"{w}/img/grid_img.png", x, 4, 3)      # 10 images: 4 columns, 3 rows
assert int(g[1 * (g.shape[0] // 16), 1 * (g.shape[1] // 25)]) == 255, "3.0 is clipped to white"
check_grid(f"{w}/img/grid_reference.png", ref, 4, 3)  # 12 images
with Image.open(f"{w}/img/trajectory_img.gif") as im:
    assert im.format == "GIF" and im.n_frames > 1, im.n_frames
print("image grids ok")
EOF_PY

# 2. flattened digits: 8x8 images from the run's own config, or the shape given.
"$py" "$src/tools/plot_results.py" "$work/flat.h5" --out "$work/flat" > "$work/flat.out" 2> "$work/flat.err" \
  || { cat "$work/flat.err" >&2; fail "plot_results.py on flattened digits"; }
grep -qx "$work/flat/grid_img.png" "$work/flat.out" || fail "no grid for flattened digits"
"$py" "$src/tools/plot_results.py" "$work/flat.h5" --out "$work/flat2" --image-shape 1,4,16 > "$work/flat2.out" \
  2> "$work/flat2.err" || { cat "$work/flat2.err" >&2; fail "plot_results.py --image-shape"; }
"$py" - "$work" <<'EOF_PY' || fail "flattened image checks"
import sys, numpy as np
from PIL import Image
w = sys.argv[1]
flat = np.load(f"{w}/flat.npy")
for folder, (h, wd) in (("flat", (8, 8)), ("flat2", (4, 16))):
    with Image.open(f"{w}/{folder}/grid_img.png") as im:
        g = np.asarray(im)
    height, width = 1 + 3 * (h + 1), 1 + 3 * (wd + 1)   # 9 images: 3 x 3
    s = max(1, 256 // height)
    assert g.shape == (height * s, width * s), (folder, g.shape)
    img = flat[4].reshape(h, wd)                        # image 4: row 1, column 1
    top, left = 1 + (h + 1), 1 + (wd + 1)
    got = g[top * s:(top + h) * s:s, left * s:(left + wd) * s:s].astype(int)
    assert np.array_equal(got, np.round(255 * (img + 1) / 2).astype(int)), folder
print("flattened grids ok")
EOF_PY
if "$py" "$src/tools/plot_results.py" "$work/flat.h5" --out "$work/bad" --image-shape 1,8 2> "$work/bad.err"; then
  fail "a bad --image-shape was accepted"
fi
grep -q "image-shape 1,8: expected C,H,W" "$work/bad.err" || fail "unclear --image-shape error: $(cat "$work/bad.err")"

# 3. points: no grids.
"$py" "$src/tools/plot_results.py" "$work/points.h5" --out "$work/pts" > "$work/pts.out" 2>/dev/null \
  || fail "plot_results.py on points"
! grep -q "grid_" "$work/pts.out" || fail "grids for points"

echo "PASS: plot_results.py image output"
