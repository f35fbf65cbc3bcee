"""The package as users install it: every stage present, layers kept, no import circle, every command starts."""

import configparser
import subprocess
from importlib import metadata

import grimp
import pytest

from conftest import BIN, PACKAGE_UNDER_TEST, REPOSITORY


def test_every_package_and_data_file_of_the_checkout_is_installed():
    """A package left out of `packages` (as sct_rootlets.implant once was) or a data file left out of
    package_data would be missing here: CI installs a wheel."""
    source = REPOSITORY / "sct_rootlets"
    shipped = {path.relative_to(source).as_posix() for path in source.rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    installed = {path.relative_to(PACKAGE_UNDER_TEST).as_posix() for path in PACKAGE_UNDER_TEST.rglob("*")}
    assert not shipped - installed, f"not installed: {sorted(shipped - installed)}"
    for expected in ("synthetic/implant.py", "model_cards/rootletseg-r20250318.json",
                     "data/pam50/PAM50_rootlets.nii.gz", "data/pam50/COPYING.LESSER", "qc/viewer/index.html"):
        assert expected in installed


def test_top_level_holds_at_most_seven_modules():
    modules = sorted(path.name for path in PACKAGE_UNDER_TEST.glob("*.py"))
    assert len(modules) <= 7, modules
    assert "segment.py" in modules  # the public API stays at the top


def test_no_import_circle():
    graph = grimp.build_graph("sct_rootlets")
    cycles = _strongly_connected(graph)
    assert cycles == [], f"import circles: {cycles}"


def _strongly_connected(graph) -> list:
    """Groups of modules that import each other (directly or through others), by Tarjan's algorithm."""
    order, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module):
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    return groups


def test_the_layer_contract_holds(tmp_path):
    """`.importlinter` states the stage order and which stages stay free of network libraries; run from an empty
    folder so that it reads the installed package, not the checkout."""
    result = subprocess.run([str(BIN / "lint-imports"), "--config", str(REPOSITORY / ".importlinter"),
                             "--no-cache"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    contracts = configparser.ConfigParser()
    contracts.read(REPOSITORY / ".importlinter")
    layers = contracts["importlinter:contract:stages"]["layers"].split()
    for stage in ("io", "store", "inference", "anatomy", "quality", "qc", "segment", "cli"):
        assert f"sct_rootlets.{stage}" in layers


def _console_scripts() -> list:
    return sorted(entry.name for entry in metadata.distribution("sct_rootlets").entry_points
                  if entry.group == "console_scripts")


def test_console_scripts_are_the_documented_ones():
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    scripts = _console_scripts()
    assert "sct_deepseg_rootlets" in scripts and len(scripts) == 12
    for name in scripts:
        assert name in readme


@pytest.mark.parametrize("command", [["sct_deepseg_rootlets"], ["sct_rootlets_levels"], ["sct_rootlets_metrics"],
                                     ["sct_rootlets_dilate"], ["sct_rootlets_qc"], ["sct_rootlets_batch"],
                                     ["sct_rootlets_dataset"], ["sct_rootlets_dataset", "implant"],
                                     ["sct_rootlets_train"], ["sct_rootlets_evaluate"], ["sct_rootlets_synth"],
                                     ["sct_rootlets_cord"], ["sct_rootlets_review"]])
def test_every_console_script_answers_help(command, tmp_path):
    result = subprocess.run([str(BIN / command[0]), *command[1:], "-h"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    assert "Traceback" not in result.stderr
