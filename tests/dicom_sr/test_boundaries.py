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


def _forbidden(modules: set[str]) -> list[str]:
    def allowed(module: str) -> bool:
        top = module.split(".", maxsplit=1)[0]
        return module in ALLOWED_MODULES or top in ALLOWED_PACKAGES or top in sys.stdlib_module_names

    return sorted(m for m in modules if not allowed(m))


def test_the_check_sees_forbidden_imports(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import gateway.spool\nfrom inference.engine import Engine\nimport numpy\n", encoding="utf-8")
    assert _forbidden(_imports(module)) == ["gateway.spool", "inference.engine"]


def test_dicom_sr_imports_stay_inside_its_boundary() -> None:
    package = Path(dicom_sr.__file__).parent
    offending = {path.name: _forbidden(_imports(path)) for path in sorted(package.glob("*.py"))}
    assert {name: modules for name, modules in offending.items() if modules} == {}
