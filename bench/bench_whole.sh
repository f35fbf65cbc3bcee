#!/bin/bash
# Whole processes before/after (issue 20), alternating so load drifts hit both: the stock predictor, the default
# `sct_deepseg_rootlets -i IMG`, `-i IMG -s CORD`, and a batch of 10 images in one process; wall time and peak RSS
# from /usr/bin/time -v. BASE is a tree of the package before the change (git archive BASE | tar -x -C "$BASE").
#   bench/bench_whole.sh /tmp/bench_inference /tmp/base RUNS OUT.tsv
set -e
WORK=$1; BASE=$2; RUNS=${3:-3}; OUT=${4:-/tmp/bench_whole.tsv}
HERE=$(cd "$(dirname "$0")" && pwd); PY=$HERE/../.venv/bin/python; CMD=$HERE/../.venv/bin/sct_deepseg_rootlets
MODEL=$WORK/model/nnUNetTrainer__nnUNetPlans__3d_fullres
IMG=$WORK/images/0.8mm_64x320x320.nii.gz; CORD=$WORK/images/0.8mm_64x320x320_cord.nii.gz
TMP=$(mktemp -d); mkdir -p "$TMP/batch"
for i in $(seq -w 1 10); do cp "$IMG" "$TMP/batch/img$i.nii.gz"; done
measure() {  # label, tree (after|before), command...
  local label=$1 tree=$2; shift 2
  local env=(); [ "$tree" = before ] && env=(env PYTHONPATH="$BASE")
  "${env[@]}" /usr/bin/time -v "$@" > /dev/null 2> "$TMP/time.txt"
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$TMP/time.txt" | awk '{print $NF}' | awk -F: '{print ($1 * 60) + $2}')
  rss=$(grep "Maximum resident" "$TMP/time.txt" | awk '{print $NF}')
  printf "%s\t%s\t%s\t%.2f\n" "$label" "$tree" "$wall" "$(echo "$rss / 1048576" | bc -l)" | tee -a "$OUT"
}
for run in $(seq "$RUNS"); do
  measure stock - "$PY" "$HERE/bench_inference.py" _stock "$MODEL" "$IMG" "$TMP/stock.nii.gz"
  for tree in before after; do
    measure default $tree "$CMD" -i "$IMG" -model "$MODEL" -o "$TMP/default_$tree.nii.gz" -overwrite
    measure with_s $tree "$CMD" -i "$IMG" -model "$MODEL" -o "$TMP/s_$tree.nii.gz" -s "$CORD" -overwrite
  done
done
for tree in before after; do
  measure batch10 $tree "$CMD" -i "$TMP"/batch/img??.nii.gz -model "$MODEL" -overwrite
done
rm -rf "$TMP"
