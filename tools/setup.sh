#!/usr/bin/env bash
# Fresh machine to first result: install dependencies, build, install the toolkit into ./install,
# and run the flagship experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PWD/install"
cmake --build build -j"$(nproc)"
cmake --install build >/dev/null
mkdir -p results
./build/bin/runexp experiments/ddim_moons.yaml --out results/ddim_moons.h5
