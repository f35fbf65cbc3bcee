"""Without any nnU-Net v2 (neither stock nnunetv2 nor SCT's fork), commands that need a network say what to
install in one sentence (README: "Set up, segment, test")."""

import os
import sys

import nibabel as nib
import pytest

from conftest import ras_image


@pytest.fixture
def no_nnunet(monkeypatch):
    """`import nnunetv2` fails as it does in an environment that has neither distribution."""
    for name in [name for name in sys.modules if name == "nnunetv2" or name.startswith("nnunetv2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nnunetv2", None)


def _one_sentence(capsys, prog: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{prog}: error: nnU-Net v2 is not installed in this Python environment")
    assert "pip install 'sct_rootlets[nnunet]'" in lines[0] and "SCT's environment" in lines[0]
    return lines[0]


def test_segmenting_without_nnunet_is_one_sentence_and_writes_nothing(no_nnunet, tmp_path, tiny_model_root,
                                                                       capsys):
    from sct_rootlets.cli.deepseg_rootlets import main

    data = tmp_path / "data"
    data.mkdir()
    image = data / "t2.nii.gz"
    nib.save(ras_image(), image)
    code = main(["-i", str(image), "-model", str(tiny_model_root), "-region", "whole", "-device", "cpu"])
    assert code == 1
    _one_sentence(capsys, "sct_deepseg_rootlets")
    assert os.listdir(data) == ["t2.nii.gz"]


def test_planning_a_training_without_nnunet_is_one_sentence(no_nnunet, tmp_path, capsys):
    from sct_rootlets.cli.rootlets_train import main

    code = main(["plan", "-work", str(tmp_path / "work"), "-id", "501"])
    assert code == 1
    _one_sentence(capsys, "sct_rootlets_train")
    assert not (tmp_path / "work").exists()
