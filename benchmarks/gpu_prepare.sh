#!/usr/bin/env bash
# Before a GPU run: put what the GPU machine cannot fetch into .gpu/ (git ignores it): the data of the
# training section and a copy of pytest. Then run there with carry [".gpu"]:
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
mkdir -p .gpu/data .gpu/site
cp "$SHARED/ml-100k/ml-100k.inter" "$SHARED/Beauty/Beauty.txt" .gpu/data/
python3 -m pip install -q --target .gpu/site --no-deps pytest pluggy iniconfig packaging
du -sh .gpu
