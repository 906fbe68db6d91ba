"""DESIGN §3: the gateway imports ``inference`` and ``dicom_sr`` through their public ``__init__`` only."""

from __future__ import annotations

import ast
from pathlib import Path

import inference

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
    return found


def test_the_gateway_uses_only_the_public_init_of_inference_and_dicom_sr() -> None:
    offenders = []
    for path in sorted(GATEWAY.rglob("*.py")):
        for line, module, _ in _imports(path):
            if module.split(".")[0] in {"inference", "dicom_sr"} and "." in module:
                offenders.append(f"{path.relative_to(GATEWAY.parent)}:{line}: {module}")
    assert offenders == [], "import these names from the package's __init__ instead:\n" + "\n".join(offenders)


def test_every_name_the_gateway_takes_from_inference_is_exported() -> None:
    for path in sorted(GATEWAY.rglob("*.py")):
        for _, module, names in _imports(path):
            if module == "inference":
                assert set(names) <= set(inference.__all__), f"{path}: {sorted(set(names) - set(inference.__all__))}"
