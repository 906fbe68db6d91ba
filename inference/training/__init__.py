"""Turning REFLACX-format data into GazeX training records (the first half of training).

The converter (:func:`convert_reflacx`) reads a REFLACX-format data set, real or phantom,
and writes LLaMA-Factory "sharegpt" records for GazeX's two tasks, in a configurable
coordinate frame (:class:`CoordinateFrame`).
"""

from inference.training.attention import AttentionSettings, DictatedSentence, SentenceAttention, sentence_attention
from inference.training.convert import ConversionSettings, ConversionSummary, convert_reflacx, reading_records
from inference.training.frames import CoordinateFrame
from inference.training.records import ATTENTION_PROMPT, EXAMINE_PROMPT, Prompts

__all__ = [
    "ATTENTION_PROMPT",
    "EXAMINE_PROMPT",
    "AttentionSettings",
    "ConversionSettings",
    "ConversionSummary",
    "CoordinateFrame",
    "DictatedSentence",
    "Prompts",
    "SentenceAttention",
    "convert_reflacx",
    "reading_records",
    "sentence_attention",
]
