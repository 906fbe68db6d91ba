"""Checkpoints bundled with this build: ``builtin:NAME`` is the directory ``NAME/`` here.

Each is a complete GazeX checkpoint directory (Hugging Face Qwen2-VL files plus ``gazex.json``);
see :mod:`inference.checkpoint`.  This build may bundle none.
"""
