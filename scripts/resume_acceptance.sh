#!/usr/bin/env bash
# Train twice with the same seed: once straight through, once stopped by SIGTERM in its second
# epoch and resumed. Prints whether the final weights are byte-identical.
# Usage: scripts/resume_acceptance.sh [WORKDIR] [extra lifnet train flags...]
set -euo pipefail
work=${1:-runs/resume-acceptance}; shift || true
lifnet=${LIFNET:-.venv/bin/lifnet}
rm -rf "$work" && mkdir -p "$work"
$lifnet train --epochs 2 --seed 5 --quiet --no-plots --out "$work/whole" "$@"
$lifnet train --epochs 2 --seed 5 --quiet --no-plots --out "$work/cut" "$@" &
pid=$!
until [ -s "$work/cut/metrics.jsonl" ]; do sleep 0.2; done   # epoch 1 is done
sleep "${STOP_AFTER:-3}"
kill -TERM "$pid"
status=0; wait "$pid" || status=$?
echo "stopped run: exit status $status"
$lifnet train --resume "$work/cut" --quiet --no-plots
${PYTHON:-.venv/bin/python} - "$work" <<'PY'
import hashlib, json, sys
from lifnet.checkpoint import read_safetensors
work = sys.argv[1]
digests = []
for run in ("whole", "cut"):
    tensors, _ = read_safetensors(f"{work}/{run}/model.safetensors")
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + tensors[name].numpy().tobytes())
    digests.append(h.hexdigest())
    print(f"{run:5s} weights sha256 {h.hexdigest()}")
print("final weights byte-identical:", digests[0] == digests[1])
sys.exit(0 if digests[0] == digests[1] else 1)
PY
