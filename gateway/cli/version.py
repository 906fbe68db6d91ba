"""``gazex version``: what is installed, and which accelerators and runtimes can be used."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
from typing import Any

from gateway import __version__


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "version", help="print the gateway, Python, torch, CUDA, TensorRT and ONNX Runtime versions"
    )
    parser.set_defaults(handler=run)


def _optional_version(module_name: str) -> str:
    """The version of an optional module, or why it cannot be imported."""
    if importlib.util.find_spec(module_name) is None:
        return "not installed"
    try:
        module = importlib.import_module(module_name)
    except (ImportError, OSError) as exc:  # a broken native library is an OSError
        return f"cannot be imported ({type(exc).__name__}: {exc})"
    return str(getattr(module, "__version__", "installed"))


def collect() -> dict[str, str]:
    """The facts ``gazex version`` prints, as a dictionary."""
    facts = {
        "gazex-gateway": __version__,
        "python": platform.python_version(),
    }
    try:
        import torch  # torch is slow to import; only this command needs it
    except ImportError as exc:
        facts["torch"] = f"cannot be imported ({exc})"
        facts["cuda"] = "unknown"
    else:
        facts["torch"] = str(torch.__version__)
        if torch.cuda.is_available():
            facts["cuda"] = f"available ({torch.version.cuda}, {torch.cuda.get_device_name(0)})"
        else:
            facts["cuda"] = "not available"
    facts["tensorrt"] = _optional_version("tensorrt")
    facts["onnxruntime"] = _optional_version("onnxruntime")
    return facts


def run(args: argparse.Namespace) -> int:
    facts = collect()
    width = max(len(key) for key in facts)
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return 0
