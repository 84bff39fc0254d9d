"""The installed import names: the generic top-level folders live under ``mofi_platform.``."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

FOLDERS = ("databuild", "services", "training", "pipelines")
BARE_IMPORT = re.compile(rf"^\s*(from|import)\s+({'|'.join(FOLDERS)})(\.|\s|$)", re.M)


def test_installed_names_resolve_outside_the_repository(tmp_path):
    code = (
        "import importlib.util, mofi, mofi_platform.services.cli, mofi_platform.training.components, "
        "mofi_platform.pipelines.pipeline, mofi_platform.databuild.cli\n"
        f"print([importlib.util.find_spec(n) is None for n in {FOLDERS!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[True, True, True, True]", "a bare top-level name is installed"


def test_no_code_imports_a_bare_top_level_folder():
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("mofi", *FOLDERS, "tests", "benchmarks", "charts")
        for p in (REPO / folder).rglob("*.py")
        if BARE_IMPORT.search(p.read_text())
    ]
    assert offenders == []


def _imports(folder: str) -> set[str]:
    found = set()
    for p in (REPO / folder).rglob("*.py"):
        found |= set(re.findall(r"^\s*(?:from|import)\s+(mofi_platform\.\w+|mofi)\b", p.read_text(), re.M))
    return found


def test_imports_only_go_downwards():
    assert _imports("mofi") <= {"mofi"}
    assert _imports("databuild") <= {"mofi", "mofi_platform.databuild"}
    assert "mofi_platform.services" not in _imports("training")
    assert "mofi_platform.pipelines" not in _imports("training") | _imports("services")
