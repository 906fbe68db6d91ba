"""Turning REFLACX-format data into GazeX training records (the first half of training).

The converter (:func:`convert_reflacx`) reads a REFLACX-format data set, real or phantom,
and writes LLaMA-Factory "sharegpt" records for GazeX's two tasks, in a coordinate frame of
:mod:`inference.geometry` and with the prompts of :mod:`inference.prompts` (or a checkpoint's own).
The gateway reaches it through :mod:`inference`'s own ``__init__`` (DESIGN §3).
"""

from inference.training.attention import AttentionSettings, DictatedSentence, SentenceAttention, sentence_attention
from inference.training.convert import ConversionSettings, ConversionSummary, convert_reflacx, reading_records

__all__ = [
    "AttentionSettings",
    "ConversionSettings",
    "ConversionSummary",
    "DictatedSentence",
    "SentenceAttention",
    "convert_reflacx",
    "reading_records",
    "sentence_attention",
]
