#!/bin/bash
# One Mamba layer (fwd+bwd) and the attention layer, old code vs new code in the same run, one thread,
# glibc's default allocator vs MALLOC_MMAP_MAX_=0 (no mmap for big blocks, so freed memory is reused
# instead of being returned to the OS and paged in again).
#   git worktree add /tmp/old <old commit>; OLD=/tmp/old NEW=$PWD bash benchmarks/scan_before_after.sh
: "${OLD:?set OLD to a checkout of the old commit}" "${NEW:=$PWD}"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
for rep in 1 2; do
for code in old new; do
  src="$NEW"/src; [ $code = old ] && src="$OLD"/src
  for env in default mmapmax0; do
    if [ $env = mmapmax0 ]; then export MALLOC_MMAP_MAX_=0; else unset MALLOC_MMAP_MAX_; fi
    echo "### rep=$rep code=$code env=$env"
    PYTHONPATH=$src python "$NEW"/benchmarks/scan_speed.py --lengths 200,400,800 --repeats 3 --only echorec,attention --out /tmp/side_${code}_${env} 2>&1 | grep "^L="
  done
done
done
