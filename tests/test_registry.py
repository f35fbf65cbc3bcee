"""The model registry: shipped cards are valid, lab cards extend them, bad cards are reported clearly."""

import json

import pytest

from conftest import run_cli, write_lab_card
from sct_rootlets.store import registry
from sct_rootlets.errors import ModelError


def test_shipped_cards_describe_the_published_releases():
    cards = registry.all_cards()
    assert {"rootletseg-r20250318", "rootlets-dorsal-r20240730", "rootlets-ventral-r20240523"} <= set(cards)
    default = registry.default_card()
    assert default.name == "rootletseg-r20250318"
    assert default.urls[0].endswith("/r20250318/model-spinal-rootlets-multicon-r20250318.zip")
    assert default.labels == {"C2": 2, "C3": 3, "C4": 4, "C5": 5, "C6": 6, "C7": 7, "C8": 8, "T1": 9}
    for card in cards.values():
        if not card.bundled:
            assert card.sha256 is None  # no published checksum: recorded at first install
        assert card.license and card.citation and card.contrasts


def test_bundled_starter_model_is_the_offline_default_and_its_archive_is_intact():
    from sct_rootlets.store.download import sha256_of_file

    starter = registry.offline_default_card()
    assert starter is not None and starter.name == "rootletseg-synth-starter" and not starter.default
    assert "generated rootlets" in starter.description and "not for research" in starter.caveat
    archive = registry.bundled_archive(starter)
    assert archive.is_file() and archive.stat().st_size <= 25 * 1024 ** 2
    assert sha256_of_file(archive) == starter.sha256


def test_bundled_card_needs_a_zip_name_and_checksum(rootlets_home):
    path = write_lab_card(rootlets_home, "lab-model", [])
    card = json.loads(path.read_text())
    path.write_text(json.dumps({**card, "bundled": "../lab.zip", "offline_default": True}))
    with pytest.raises(ModelError, match="bundled must be a .zip file name beside the card, with the card's sha256"):
        registry.all_cards()
    path.write_text(json.dumps({**card, "offline_default": True}))
    with pytest.raises(ModelError, match="only a bundled model can be the offline default"):
        registry.all_cards()


def test_offline_default_needs_a_caveat(rootlets_home):
    path = write_lab_card(rootlets_home, "lab-model", [], sha256="1" * 64)
    card = json.loads(path.read_text())
    path.write_text(json.dumps({**card, "bundled": "lab.zip", "offline_default": True}))
    with pytest.raises(ModelError, match="an offline default needs a caveat"):
        registry.all_cards()


def test_lab_default_replaces_the_shipped_one_and_only_one_may_say_so(rootlets_home):
    write_lab_card(rootlets_home, "lab-mirror", ["http://127.0.0.1:1/x.zip"], default=True)
    assert registry.default_card().name == "lab-mirror"
    write_lab_card(rootlets_home, "lab-other", ["http://127.0.0.1:1/y.zip"], default=True)
    with pytest.raises(ModelError, match="At most one lab model card may be the default rootlets model, found 2"):
        registry.default_card()


def test_models_of_other_tasks_leave_the_rootlets_default_and_starter_alone(rootlets_home):
    """A bundled model of another task (e.g. a cord model) marked default and offline default changes nothing."""
    path = write_lab_card(rootlets_home, "cord-model", [], sha256="1" * 64, default=True)
    card = json.loads(path.read_text())
    path.write_text(json.dumps({**card, "task": "spinalcord", "bundled": "cord.zip", "offline_default": True,
                                "caveat": "a cord model"}))
    assert registry.default_card().name == "rootletseg-r20250318"
    assert registry.offline_default_card().name == "rootletseg-synth-starter"
    assert registry.default_card("spinalcord").name == registry.offline_default_card("spinalcord").name == "cord-model"


def test_lab_card_is_listed(rootlets_home):
    write_lab_card(rootlets_home, "lab-model", ["http://127.0.0.1:1/lab.zip"])
    assert "lab-model" in registry.all_cards()
    result = run_cli("-list-models", env_home=rootlets_home)
    assert result.returncode == 0 and "lab-model" in result.stdout and "rootletseg-r20250318 [default]" in result.stdout


def test_invalid_lab_card_is_reported(rootlets_home):
    path = write_lab_card(rootlets_home, "lab-model", ["ftp://nowhere/lab.zip"], sha256="abc")
    with pytest.raises(ModelError, match="is invalid: sha256 must be null or 64 lowercase hex digits; urls must"):
        registry.all_cards()
    path.write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON"):
        registry.all_cards()


def test_duplicate_name_is_refused(rootlets_home):
    write_lab_card(rootlets_home, "rootletseg-r20250318", ["http://127.0.0.1:1/x.zip"])
    with pytest.raises(ModelError, match="defined by two model cards"):
        registry.all_cards()


def test_listing_does_not_import_torch(rootlets_home):
    import subprocess
    import sys

    code = ("import sys; from sct_rootlets.cli.deepseg_rootlets import main; main(['-list-models']); "
            "print('torch' in sys.modules, 'nnunetv2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False False"


def test_list_models_shows_each_models_contrasts_and_the_suffix_that_selects_them(rootlets_home):
    """RootletSeg r20250318 reads T2w and 7T MP2RAGE (UNIT1 and both inversion images: SCT_CONVENTIONS.md); the
    inversion images are BIDS `inv-<N>_MP2RAGE` files, which is what -suffix says."""
    path = write_lab_card(rootlets_home, "lab-unit1", ["http://127.0.0.1:1/lab.zip"])
    path.write_text(json.dumps({**json.loads(path.read_text()), "contrasts": ["UNIT1", "T1w-INV2"]}))
    result = run_cli("-list-models", env_home=rootlets_home)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    def contrasts_of(name: str) -> str:
        line = lines[next(i for i, text in enumerate(lines) if text.split(" [")[0] == name) + 2]
        return line.split(";")[0].strip()

    assert contrasts_of("rootletseg-r20250318") == ("contrasts: T2w, UNIT1, T1w-INV1 (-suffix inv-1_MP2RAGE), "
                                                    "T1w-INV2 (-suffix inv-2_MP2RAGE)")
    assert contrasts_of("rootlets-dorsal-r20240730") == "contrasts: T2w"
    assert contrasts_of("lab-unit1") == "contrasts: UNIT1, T1w-INV2 (-suffix inv-2_MP2RAGE)"


def test_a_models_card_says_its_contrasts_else_its_dataset_json(rootlets_home, tiny_model_zip, tiny_model_root):
    """The tiny model's dataset.json names one channel, T2w (tests/tiny_model.py); installed under a card that
    lists UNIT1, the card is what counts."""
    from sct_rootlets.store import install
    from sct_rootlets.store.download import sha256_of_file
    from sct_rootlets.store.resolve import resolve_model

    path = write_lab_card(rootlets_home, "tiny-unit1", [], sha256=sha256_of_file(tiny_model_zip))
    path.write_text(json.dumps({**json.loads(path.read_text()), "contrasts": ["UNIT1"]}))
    install.install_from(str(tiny_model_zip), progress=False)
    assert resolve_model("tiny-unit1").contrasts == ("UNIT1",)
    assert resolve_model(str(tiny_model_root)).contrasts == ("T2w",)
