"""dicom_sr imports only the result contract, highdicom, pydicom, numpy and the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import dicom_sr

ALLOWED_PACKAGES = {"highdicom", "pydicom", "numpy", "dicom_sr"}
ALLOWED_MODULES = {"inference.results"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import gateway.spool\nfrom inference.engine import Engine\n", encoding="utf-8")
    assert _imports(module) == {"gateway.spool", "inference.engine"}


def test_dicom_sr_imports_stay_inside_its_boundary() -> None:
    package = Path(dicom_sr.__file__).parent
    offending: dict[str, list[str]] = {}
    for path in sorted(package.glob("*.py")):
        for module in _imports(path):
            top = module.split(".")[0]
            allowed = module in ALLOWED_MODULES or top in ALLOWED_PACKAGES or top in sys.stdlib_module_names
            if not allowed:
                offending.setdefault(path.name, []).append(module)
    assert offending == {}
