#!/bin/sh
# A build-only CUDA 13.0 toolkit root from pinned PyPI wheels, for `cargo build --features cuda`
# on a machine without system CUDA or a GPU (docs/cuda.md). Needs pip, python3 and gcc.
# Usage: sh scripts/setup-cuda13.sh DEST
#   then: CUDA_HOME=DEST PATH=DEST/bin:$PATH CUDA_COMPUTE_CAP=90 cargo build --release --features cuda
set -eu
DEST=${1:?usage: sh scripts/setup-cuda13.sh DEST}
WHL=$(mktemp -d)
trap 'rm -rf "$WHL"' EXIT
# The versions nvcc 13.0.x needs for candle-kernels (CUDA 13.0, driver 580): pinned.
pip download -q --no-deps --no-cache-dir --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$WHL" \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
  nvidia-curand==10.4.0.35 nvidia-cublas==13.1.0.3
for w in "$WHL"/*.whl; do python3 -m zipfile -e "$w" "$WHL/x"; done
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$WHL/x/nvidia/cu13" "$DEST"
chmod +x "$DEST"/bin/* "$DEST"/nvvm/bin/*   # zip extraction drops the exec bits
cd "$DEST/lib"                               # unversioned names for -lcublas etc.
for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done
ln -sf libcurand.so.10 libcurand.so
# A link-time-only libcuda (SONAME libcuda.so.1) with every cu* symbol of cuda.h as an empty
# function; at run time the driver's real libcuda.so.1 is loaded instead.
mkdir -p stubs
gcc -E -P -D__CUDA_API_VERSION_INTERNAL -I"$DEST/include" "$DEST/include/cuda.h" \
  | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' (' | sort -u \
  | awk '{print "void " $1 "(void){}"}' > stubs/libcuda_stub.c
gcc -shared -fPIC -w -Wl,-soname,libcuda.so.1 -o stubs/libcuda.so stubs/libcuda_stub.c
"$DEST/bin/nvcc" --version | tail -2
