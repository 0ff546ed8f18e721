#!/usr/bin/env bash
# GPU smoke test and throughput (SASRec: BCE, full CE, batch-wide pool with sparse updates; large synthetic data); skips without CUDA.
# Usage: bash benchmarks/gpu.sh [--out DIR]   (results in DIR/gpu.json, default benchmarks/results)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import seqrec._core" 2>/dev/null || python3 -m pip install --quiet -e .
exec python3 -m benchmarks.gpu "$@"
