#!/usr/bin/env bash
# Install the Debian packages the toolkit needs (Debian 12, as root). Idempotent: does nothing
# when everything is already installed.
set -euo pipefail
packages=(
  cmake g++ make pkg-config
  libxtensor-dev xtl-dev libxsimd-dev libxtensor-blas-dev libopenblas-dev
  libboost1.74-dev libboost-program-options-dev
  libyaml-cpp-dev libhdf5-dev catch2
  # image data and grids (plugins/image_data, tools/grid): zlib reads the gzip-compressed files,
  # libpng writes PNG; scikit-learn ships the 8x8 digits the image tests use; Fashion-MNIST's
  # IDX files go to /usr/share/datasets/fashion-mnist.
  zlib1g-dev libpng-dev python3-sklearn dataset-fashion-mnist
  python3 python3-h5py python3-numpy python3-matplotlib python3-pil python3-yaml
  # tools/fuzz.sh: libFuzzer and clang's sanitizer runtimes, and llvm-symbolizer for its reports
  # (tools/test_sanitizers.sh uses GCC's sanitizers, which come with g++).
  clang-14 libclang-rt-14-dev llvm-14
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
