"""The bundled starter model (trained on synthetic data only) runs offline through the normal command: with no
model installed and SCT_ROOTLETS_OFFLINE set (as in every test), `sct_deepseg_rootlets` installs it from the
package, warns what it is, and segments a generated volume (seed outside the training seeds) where its rootlets
are: overlapping the true ones, beside the cord."""

import json

import nibabel as nib
import numpy as np

from conftest import run_cli
from sct_rootlets.synth import SynthOptions, generate_case, load_template, write_case

#: Well below the measured mean on 20 generated volumes (bench/RESULTS.md), to catch a broken model or pipeline.
STARTER_MIN_BINARY_DICE = 0.5


def test_starter_model_segments_a_generated_volume_offline(tmp_path, rootlets_home):
    options = SynthOptions(orientation="PSR", shape=(64, 128, 320))  # a narrower field of view than 320: faster
    image_path = write_case(generate_case(load_template(), 424242, options), tmp_path / "ds", "sub-001", options)
    output = tmp_path / "sub-001_rootlets.nii.gz"
    result = run_cli("-i", image_path, "-o", output, "-device", "cpu", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is not installed; using the bundled rootletseg-synth-starter instead" in result.stderr
    assert "not for research on real scans" in result.stderr
    labels = np.asanyarray(nib.load(output).dataobj)
    present = set(np.unique(labels)) - {0}
    assert present and present <= set(range(2, 10))
    truth_folder = tmp_path / "ds" / "derivatives" / "labels" / "sub-001" / "anat"
    truth = np.asanyarray(nib.load(truth_folder / "sub-001_T2w_label-rootlets_dseg.nii.gz").dataobj)
    cord = np.asanyarray(nib.load(truth_folder / "sub-001_T2w_label-SC_seg.nii.gz").dataobj) > 0
    binary_dice = 2 * np.sum((labels > 0) & (truth > 0)) / (np.sum(labels > 0) + np.sum(truth > 0))
    assert binary_dice > STARTER_MIN_BINARY_DICE
    assert np.sum((labels > 0) & cord) < 0.1 * np.sum(labels > 0)
    assert nib.aff2axcodes(nib.load(output).affine) == nib.aff2axcodes(nib.load(image_path).affine)
    sidecar = json.loads(output.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Model"]["Name"] == "rootletseg-synth-starter"
    provenance = json.loads((rootlets_home / "models" / "rootletseg-synth-starter" /
                             "sct_rootlets_install.json").read_text())
    assert provenance["checksum"] == "verified" and provenance["source"].startswith("bundled with sct_rootlets")
