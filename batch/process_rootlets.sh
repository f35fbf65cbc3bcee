#!/bin/bash
#
# Rootlets for one subject, for sct_run_batch:
#   sct_run_batch -path-data DS -path-output OUT -script batch/process_rootlets.sh -jobs N \
#                 [-script-args "MODEL [SUFFIX [CORD_MODEL]]"]
#
# $1 = sub-XX or sub-XX/ses-YY (sct_run_batch passes it); $2 (optional) = model name or folder, or "default" for the
# model a run without -model uses; $3 (optional) = the images' BIDS suffix as sct_rootlets_batch -suffix takes it
# (T2w by default; e.g. UNIT1, T1w, MTS, inv-1_MP2RAGE), the images found by sct_rootlets_batch -list-images;
# $4 (optional) = cord model for sct_rootlets_cord -cord-model (e.g. sct-contrast-agnostic; default: the bundled one).
# Uses PATH_DATA, PATH_DATA_PROCESSED, PATH_RESULTS, PATH_LOG and PATH_QC as sct_run_batch sets them.
# A manual cord mask in $PATH_DATA/derivatives/labels is preferred; otherwise sct_rootlets_cord (the cord model
# bundled with sct_rootlets, SCT not needed, or the one $4 names) makes one; spinal levels follow from it. Each job uses
# SCT_ROOTLETS_THREADS threads (default 1), so -jobs N never oversubscribes the CPUs.

set -euo pipefail
set -x

SUBJECT=$1
MODEL=${2:-default}
SUFFIX=${3:-T2w}
CORD_MODEL=${4:-bundled}
THREADS=${SCT_ROOTLETS_THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

for var in PATH_DATA PATH_DATA_PROCESSED PATH_RESULTS PATH_QC; do
  if [[ -z "${!var:-}" ]]; then echo "process_rootlets.sh: $var is not set (run me through sct_run_batch)" >&2; exit 2; fi
done

# BIDS names: sub-XX/ses-YY -> sub-XX_ses-YY
FILE_PREFIX=${SUBJECT//\//_}
# QC entries name the dataset by its folder, as SCT's QC does for an image inside it (DATASET/sub-XX/anat/...);
# the working copy in data_processed would otherwise give "data_processed".
DATASET=$(basename "$(cd "$PATH_DATA" && pwd)")
QC_ARGS=(-qc "$PATH_QC" -qc-dataset "$DATASET" -qc-subject "$FILE_PREFIX")
mkdir -p "$PATH_DATA_PROCESSED/$SUBJECT" "$PATH_RESULTS"
rsync -a --exclude 'derivatives' "$PATH_DATA/$SUBJECT/" "$PATH_DATA_PROCESSED/$SUBJECT/" 2>/dev/null \
  || cp -r "$PATH_DATA/$SUBJECT/." "$PATH_DATA_PROCESSED/$SUBJECT/"
cd "$PATH_DATA_PROCESSED/$SUBJECT/anat"

MODEL_ARGS=()
[[ "$MODEL" != default && -n "$MODEL" ]] && MODEL_ARGS=(-model "$MODEL")

# This subject's images of that suffix, as the batch command finds them (none: nothing to do).
listing=$(sct_rootlets_batch -path-data "$PATH_DATA" -suffix "$SUFFIX" -include "$SUBJECT" -list-images)
mapfile -t images < <(printf '%s' "$listing")
for relative in "${images[@]}"; do
  image=$(basename "$relative")
  stem=${image%.gz}
  stem=${stem%.nii}
  manual_cord="$PATH_DATA/derivatives/labels/$SUBJECT/anat/${stem}_label-SC_seg.nii.gz"
  CORD_ARGS=()
  if [[ -f "$manual_cord" ]]; then
    cp "$manual_cord" "${stem}_label-SC_seg.nii.gz"
    CORD_ARGS=(-s "${stem}_label-SC_seg.nii.gz")
  elif cord_log=$(sct_rootlets_cord -i "$image" -o "${stem}_seg.nii.gz" -cord-model "$CORD_MODEL" \
      -threads "$THREADS" "${QC_ARGS[@]}" -overwrite -v 1 2>&1); then
    echo "$cord_log"
    CORD_ARGS=(-s "${stem}_seg.nii.gz")
  elif [[ "$cord_log" == *"No spinal cord was found"* || "$cord_log" == *"is not plausible"* ]]; then
    echo "$cord_log" >&2  # no cord, or none that can be a cord: the whole image, rootlets without spinal levels
  else
    echo "$cord_log" >&2  # any other failure (e.g. a wrong cord model) fails the job, not silently the levels
    exit 1
  fi
  sct_deepseg_rootlets -i "$image" -o "${stem}_label-rootlets_dseg.nii.gz" "${MODEL_ARGS[@]}" -threads "$THREADS" \
    "${CORD_ARGS[@]}" "${QC_ARGS[@]}" -overwrite -v 1

  levels_csv="${stem}_label-rootlets_dseg_spinal_levels.csv"
  if [[ -f "$levels_csv" ]]; then
    # Append to one results table. The jobs sct_run_batch runs in parallel serialise on a lock of the table
    # itself (flock), so no lock file is left among the results.
    summary="$PATH_RESULTS/spinal_levels.csv"
    {
      flock 9
      [[ -s "$summary" ]] || head -n 1 "$levels_csv" >&9
      tail -n +2 "$levels_csv" >&9
    } 9>>"$summary"
  fi
done
