"""Metrics on a constructed volume where every number is worked out by hand (slices are 2 mm thick)."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from sct_rootlets.qc.metrics import evaluate

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # RAS, slice axis z, 2 mm slices


@pytest.fixture
def volumes():
    truth = np.zeros((4, 4, 10), np.uint8)
    prediction = np.zeros_like(truth)
    truth[1, 1, 2:6] = 2          # level 2: truth slices 2..5, prediction 4..7
    prediction[1, 1, 4:8] = 2
    truth[2, 2, [0, 9]] = 3       # level 3: truth slices 0 and 9, prediction slice 0
    prediction[2, 2, 0] = 3
    prediction[3, 3, 5] = 4       # level 4: prediction only
    return truth, prediction


def test_metrics_worked_out_by_hand(volumes):
    table = evaluate(*volumes, AFFINE, (1.0, 1.0, 2.0)).set_index("level")

    level2 = table.loc[2]
    assert level2.dice == pytest.approx(0.5)                      # 2*2 / (4+4)
    assert (level2.sp, level2.fn, level2.fp, level2.tn) == (2, 2, 2, 0)
    assert level2.f1 == pytest.approx(0.5)                        # 4 / (4+2+2)
    assert level2.slice_dice_mean == pytest.approx(2 / 6)         # slices 4, 5 agree of 2..7
    assert level2.midpoint_error_mm == pytest.approx(4.0)         # (5.5 - 3.5) slices * 2 mm
    assert level2.hd95_mm == pytest.approx(4.0)                   # distances 4,2,0,0 | 0,0,2,4 mm

    level3 = table.loc[3]
    assert level3.dice == pytest.approx(2 / 3)
    assert (level3.sp, level3.fn, level3.fp, level3.tn) == (1, 1, 0, 8)   # every slice of 0..9 counted
    assert level3.f1 == pytest.approx(2 / 3)
    assert level3.slice_dice_mean == pytest.approx(0.5)
    assert level3.midpoint_error_mm == pytest.approx(-9.0)        # (0 - 4.5) slices * 2 mm
    assert level3.hd95_mm == pytest.approx(16.2)                  # percentile 95 of [0, 0, 18]

    level4 = table.loc[4]
    assert (level4.dice, level4.f1, level4.sp, level4.fp, level4.fn, level4.tn) == (0, 0, 0, 1, 0, 0)
    assert pd.isna(level4.hd95_mm) and pd.isna(level4.midpoint_error_mm)  # undefined: no truth

    everything = table.loc["all"]
    assert everything.dice == pytest.approx(0.5)                  # 2*3 / (6+6)
    assert (everything.sp, everything.fn, everything.fp, everything.tn) == (3, 3, 2, 2)
    assert everything.f1 == pytest.approx(6 / 11)


def test_defined_quantities_are_never_nan(volumes):
    table = evaluate(*volumes, AFFINE, (1.0, 1.0, 2.0))
    defined = table.drop(columns=["hd95_mm", "midpoint_error_mm"])
    assert not defined.isna().any().any()


def test_perfect_prediction(volumes):
    truth, _ = volumes
    table = evaluate(truth, truth.copy(), AFFINE, (1.0, 1.0, 2.0))
    assert (table.dice == 1).all() and (table.f1 == 1).all() and (table.hd95_mm == 0).all()
    assert (table.fp == 0).all() and (table.fn == 0).all()


def test_slice_axis_follows_anatomy_not_storage(volumes):
    """The same volumes stored with the slice axis first (PSR-like) give the same table."""
    truth, prediction = volumes
    affine = np.array([[0, 0, -1.0, 0], [0, 1.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])  # axis 0 is S
    moved = [np.transpose(v, (2, 1, 0))[:, :, ::-1] for v in volumes]
    pd.testing.assert_frame_equal(evaluate(*moved, affine, (2.0, 1.0, 1.0)),
                                  evaluate(truth, prediction, AFFINE, (1.0, 1.0, 2.0)))


def test_metrics_command(volumes, tmp_path, rootlets_home):
    paths = []
    for name, data in zip(("gt", "pred"), volumes):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, AFFINE), paths[-1])
    csv = tmp_path / "metrics.csv"
    result = run_cli("-gt", paths[0], "-pred", paths[1], "-o", csv, env_home=rootlets_home,
                     command="sct_rootlets_metrics")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(csv)
    assert list(table.level) == ["2", "3", "4", "all"]
    assert table.dice.iloc[0] == pytest.approx(0.5)
    assert "all" in result.stdout

    other_grid = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(volumes[1], np.diag([1.0, 1.0, 1.0, 1.0])), other_grid)
    result = run_cli("-gt", paths[0], "-pred", other_grid, env_home=rootlets_home, command="sct_rootlets_metrics")
    assert result.returncode == 1 and "is not on the voxel grid of" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
