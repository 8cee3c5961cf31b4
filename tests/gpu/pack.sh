#!/bin/bash
# Builds what tests/gpu/check.sh runs on a lent GPU machine, which has the CUDA toolkit but none of
# Debian's libraries (jansson, protobuf-c, Open MPI) and nothing to fetch them from: a CUDA build
# of beaconrt, its tools and benchmarks, the shared libraries they load, and a relocatable Open MPI
# for the 2-rank check, packed into .gpu/bundle.tar.xz (git-ignored; the device tool carries it:
# carry [".gpu"]). Run here, on this machine (same x86-64, same nvcc 13.0 as the GPU machines).
#   tests/gpu/pack.sh            then: run command "bash tests/gpu/check.sh", carry [".gpu"]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=build-gpu
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DBRT_CUDA=ON -DBRT_SANITIZE_TOOLS=OFF >/dev/null
cmake --build $B -j"$(nproc)" --target beaconrt brt_check test_backend_ops bench_gpu bench_kernels >/dev/null
S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
mkdir -p $S/bin $S/lib
cp $B/beaconrt $B/tests/brt_check $B/tests/test_backend_ops $B/bench/bench_gpu $B/bench/bench_kernels $S/bin/
strip $S/bin/*
# the shared libraries beaconrt needs that a CUDA image lacks (not glibc's)
ldd $B/beaconrt | awk '/=> \//{print $3}' | grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux)[.-]' |
    while read -r l; do cp -L "$l" $S/lib/; done
# Open MPI (orterun/orted, its components, PMIx) in its own tree, relocated with OPAL_PREFIX
O=$S/ompi/usr
mkdir -p $O/bin $O/lib/x86_64-linux-gnu $O/share
cp -L /usr/bin/orterun /usr/bin/orted $O/bin/
cp -a /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 $O/lib/x86_64-linux-gnu/
cp -a /usr/share/openmpi $O/share/
for l in $(ldd /usr/bin/orterun /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/*.so 2>/dev/null | awk '/=> \//{print $3}' | sort -u); do
    case $l in */libc.so*|*/libm.so*|*/ld-linux*|*/libpthread*|*/libdl.so*|*/librt.so*) ;; *) cp -L "$l" $S/lib/ 2>/dev/null || true ;; esac
done
rm -rf $O/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/mca_*java* 2>/dev/null || true
mkdir -p .gpu
tar -C $S -cJf .gpu/bundle.tar.xz .

echo "tests/gpu/pack.sh: .gpu/bundle.tar.xz $(du -h .gpu/bundle.tar.xz | cut -f1) ($(git rev-parse --short HEAD)$(git diff --quiet || echo +changes))"
