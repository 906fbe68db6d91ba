"""Training GazeX models: REFLACX-format data -> GazeX training records -> a trained checkpoint.

- The converter (:func:`convert_reflacx`) reads a REFLACX-format data set, real or phantom,
  and writes LLaMA-Factory "sharegpt" records for GazeX's two tasks in a coordinate frame
  of :mod:`inference.geometry`, with a description (``.meta.json``) beside them.
- The trainer (:func:`train`) fine-tunes a Qwen2-VL checkpoint on such records, or trains one
  from scratch, and writes a complete GazeX checkpoint.
- :func:`evaluate_checkpoint` measures a checkpoint on held-out phantoms.

The gateway reaches these through :mod:`inference`'s own ``__init__`` (DESIGN §3).
"""

from inference.training.attention import AttentionSettings, DictatedSentence, SentenceAttention, sentence_attention
from inference.training.convert import ConversionSettings, ConversionSummary, convert_reflacx, reading_records
from inference.training.data import TrainingDataError, read_description, read_records
from inference.training.trainer import LoraSettings, Progress, TrainingError, TrainingSettings, train

__all__ = [
    "AttentionSettings",
    "ConversionSettings",
    "ConversionSummary",
    "DictatedSentence",
    "LoraSettings",
    "Progress",
    "SentenceAttention",
    "TrainingDataError",
    "TrainingError",
    "TrainingSettings",
    "convert_reflacx",
    "read_description",
    "read_records",
    "reading_records",
    "sentence_attention",
    "train",
]
