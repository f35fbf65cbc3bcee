"""The bundled starter model (trained on synthetic data only) runs offline through the normal command: with no
model installed, `sct_deepseg_rootlets` installs it from the package, says so, and segments a generated volume."""

import json

import nibabel as nib
import numpy as np
import pytest

from conftest import SHARED_DATA, run_cli
from sct_rootlets.synth import SynthOptions, generate_case, load_template, write_case

PAM50 = SHARED_DATA / "pam50"


@pytest.mark.skipif(not PAM50.is_dir(), reason="../shared/data/pam50 is absent")
def test_starter_model_segments_a_generated_volume_offline(tmp_path, rootlets_home):
    options = SynthOptions(orientation="PSR")
    image_path = write_case(generate_case(load_template(PAM50), 424242, options), tmp_path / "ds", "sub-001", options)
    output = tmp_path / "sub-001_rootlets.nii.gz"
    result = run_cli("-i", image_path, "-o", output, "-device", "cpu", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is not installed" in result.stderr and "rootletseg-synth-starter" in result.stderr
    labels = np.asanyarray(nib.load(output).dataobj)
    present = set(np.unique(labels)) - {0}
    assert present and present <= set(range(2, 10))
    assert nib.aff2axcodes(nib.load(output).affine) == nib.aff2axcodes(nib.load(image_path).affine)
    sidecar = json.loads(output.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Model"]["Name"] == "rootletseg-synth-starter"
    provenance = json.loads((rootlets_home / "models" / "rootletseg-synth-starter" /
                             "sct_rootlets_install.json").read_text())
    assert provenance["checksum"] == "verified" and provenance["source"].startswith("bundled with sct_rootlets")
