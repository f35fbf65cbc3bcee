#!/usr/bin/env bash
# sct_rootlets inside an SCT-like environment, from scratch (CI step 3 of .ci/run; about 5 minutes on 2 cores).
#   usage: .ci/sct_env.sh VENV_DIR WHEEL
# 1. builds VENV_DIR from SCT's own requirements (../shared/sct/requirements.txt; torch<2.3 becomes torch==2.13.0,
#    the only CPU torch on these machines) and records its `pip freeze` before sct_rootlets comes;
# 2. installs WHEEL as README "Inside SCT" tells SCT users: that freeze as a constraint file, so pip can add
#    packages but never change one of SCT's (nor replace SCT's nnU-Net fork by stock nnU-Net); then the test tools;
# 3. runs, from a folder outside the checkout (the installed package is tested, never the source tree),
#    tests/sct_env (nothing of SCT changed, SCT's fork loads our model as SCT does, our commands work) and the
#    tests that nnU-Net's version affects most (the fork ensembles folds and reads its folders differently).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(realpath -m "$1")"
wheel="$(realpath "$2")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$SECONDS

echo "-- SCT-like environment in $venv"
rm -rf "$venv"
python3 -m venv "$venv"
sed -e 's/^torch<2\.3$/torch==2.13.0/' -e '/^#/d' "$repo/../shared/sct/requirements.txt" > "$work/sct_requirements.txt"
grep -qx 'torch==2.13.0' "$work/sct_requirements.txt" || { echo "SCT's requirements no longer pin torch<2.3" >&2; exit 1; }
"$venv/bin/pip" install -q -r "$work/sct_requirements.txt"
freeze="$work/freeze_before.txt"
"$venv/bin/pip" freeze --exclude-editable > "$freeze"
echo "   $(wc -l < "$freeze") distributions ($((SECONDS - start)) s)"

echo "-- sct_rootlets into it, SCT's versions as constraints"
"$venv/bin/pip" install -q -c "$freeze" "$wheel"
"$venv/bin/pip" install -q -c "$freeze" "${wheel}[test]"  # the test tools, under the same constraint
"$venv/bin/pip" check
"$venv/bin/pip" freeze --exclude-editable > "$work/freeze_after.txt"
echo "   added: $(comm -13 <(sort "$freeze") <(sort "$work/freeze_after.txt") | cut -d= -f1 | cut -d' ' -f1 | tr '\n' ' ')"

echo "-- launchers copied beside SCT's, run from a shell with only them on the PATH (README: Inside SCT)"
mkdir -p "$work/sct_bin"
cp "$venv"/bin/sct_deepseg_rootlets "$venv"/bin/sct_rootlets_* "$work/sct_bin/"
env -i HOME="$HOME" PATH="$work/sct_bin:/usr/bin:/bin" sct_deepseg_rootlets -list-models > "$work/list.txt"
grep -q "Without -model, sct_deepseg_rootlets uses" "$work/list.txt"

echo "-- tests in the SCT-like environment ($((SECONDS - start)) s so far)"
cd "$work"
SCT_ROOTLETS_SCT_FREEZE_BEFORE="$freeze" "$venv/bin/pytest" -p no:cacheprovider -q "$repo/tests/sct_env" \
    "$repo/tests/test_fast_inference.py" "$repo/tests/test_inference.py" "$repo/tests/test_cord.py" \
    "$repo/tests/test_training.py"
echo "-- SCT-like environment: done in $((SECONDS - start)) s"
