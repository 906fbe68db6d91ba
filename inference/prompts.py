"""GazeX's prompts and the Qwen2-VL chat format they are wrapped in.

The two prompt texts are GazeX's own (``KennyLee123/GazeX``):

- :data:`GAZEX_EXAMINE_PROMPT` from ``model_inference/basic_examine_chest_xray.json``;
- :data:`GAZEX_ATTENTION_PROMPT` from ``model_inference/attention_extraction.json`` in the
  wording that ``preprocessing_scripts/Create_Training_Data.py`` trains the model with
  ("Output as much visual clues ..."), with the sentence slot written ``{sentence}``.

:func:`render_chat` renders one image-and-text user turn exactly as the Qwen2-VL chat template
does (system turn, ``<|vision_start|><|image_pad|><|vision_end|>`` before the text, then the
assistant turn).  Training code renders its examples with the same function, so inference and
training see identical token sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

GAZEX_EXAMINE_PROMPT = (
    "Given an X-ray image, mimic a radiologist's eye-tracking pattern and generate a description of the image."
)

#: The examine prompt GazeX was trained with (``preprocessing_scripts/Create_Training_Data.py``:
#: the user turn ``"<image> Given an X-ray image, ..."``).  LLaMA-Factory's ``qwen2_vl`` template
#: replaces ``<image>`` with ``<|vision_start|><|image_pad|>...<|vision_end|>`` and keeps the
#: rest, so the text after the image starts with that space; :func:`render_chat` puts the
#: image first, so this constant keeps the leading space and the token sequences are equal.
GAZEX_TRAINING_EXAMINE_PROMPT = (
    " Given an X-ray image, using the radiologist's interpretation pattern, generate a detailed description or "
    "diagnosis for the image."
)

SENTENCE_SLOT = "{sentence}"


def placeholder_problem(prompt: str) -> str | None:
    """Why ``prompt`` looks like an abbreviated example rather than a real prompt, or None.

    A prompt that ends in ``...`` or contains ``\u2026`` is refused; GazeX's own attention prompt
    has ``...`` inside its format description (``(centroidx2, centroidy2), ...]``), which is
    allowed.
    """
    text = prompt.strip()
    if "\u2026" in text:
        return "contains the placeholder \u2026 (an abbreviated example); give the complete prompt text"
    if text.endswith("...") or text.startswith("..."):
        return (
            'starts or ends with the placeholder "..." (an abbreviated example); give the complete prompt text '
            "(GazeX's are in inference.prompts and docs/models.md)"
        )
    return None


GAZEX_ATTENTION_PROMPT = (
    "Given an X-ray image and a radiologist's description '{sentence}', mimic a radiologist's interpretation "
    "pattern to identify visual clues and an overall observation area. Analyze the image to detect relevant "
    "features (e.g., abnormal opacities, fractures, lesions, or other radiological findings) that correspond to "
    "the provided description. Output as much visual clues to support your observation and generate only one "
    "observation area in the format of bounding boxes and centroids, using the structure: 'visual clues: "
    "[(xmin1, ymin1)(xmax1, ymax1)(centroidx1, centroidy1), (xmin2, ymin2)(xmax2, ymax2)(centroidx2, "
    "centroidy2), ...], observation: [(xmin, ymin)(xmax, ymax)(centroidx, centroidy)]'."
)

#: The default system message of the Qwen2-VL chat template.
SYSTEM_MESSAGE = "You are a helpful assistant."

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"

#: The Qwen2-VL special tokens, in the order Qwen2-VL's tokenizer numbers them.
QWEN2_VL_SPECIAL_TOKENS: tuple[str, ...] = (
    END_OF_TEXT,
    IM_START,
    IM_END,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    VISION_START,
    VISION_END,
    "<|vision_pad|>",
    IMAGE_PAD,
    "<|video_pad|>",
)

#: The chat template of Qwen2-VL-2B/7B-Instruct (``chat_template.json``), verbatim.  The test
#: checkpoints ship it so that Hugging Face's own rendering can be compared with ours.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def render_chat(user_text: str, *, assistant_text: str | None = None) -> str:
    """One image-and-text user turn in the Qwen2-VL chat format, with a single ``<|image_pad|>``.

    Without ``assistant_text`` the result ends with the opened assistant turn (the
    generation prompt); with it, the assistant turn holds that text and is closed, as the
    template renders a training example.  Expand the image placeholder with
    :func:`expand_image_pad`.
    """
    text = (
        f"{IM_START}system\n{SYSTEM_MESSAGE}{IM_END}\n"
        f"{IM_START}user\n{VISION_START}{IMAGE_PAD}{VISION_END}{user_text}{IM_END}\n"
        f"{IM_START}assistant\n"
    )
    if assistant_text is not None:
        text += f"{assistant_text}{IM_END}\n"
    return text


def expand_image_pad(text: str, image_tokens: int) -> str:
    """``text`` with its one ``<|image_pad|>`` repeated ``image_tokens`` times."""
    if text.count(IMAGE_PAD) != 1:
        raise ValueError(f"expected exactly one {IMAGE_PAD} in the prompt, found {text.count(IMAGE_PAD)}")
    if image_tokens <= 0:
        raise ValueError(f'Argument "image_tokens" must be positive, got {image_tokens}')
    return text.replace(IMAGE_PAD, IMAGE_PAD * image_tokens)


def attention_text(template: str, sentence: str) -> str:
    """The attention-extraction prompt for ``sentence`` (``template`` holds one ``{sentence}``)."""
    if template.count(SENTENCE_SLOT) != 1:
        raise ValueError(f"the attention prompt must contain {SENTENCE_SLOT} exactly once")
    return template.replace(SENTENCE_SLOT, sentence)


class PromptEncoder:
    """Token ids of a checkpoint's two prompts, with the image's placeholder run expanded."""

    def __init__(self, tokenizer: Tokenizer, examine: str, attention: str) -> None:
        if attention.count(SENTENCE_SLOT) != 1:
            raise ValueError(f"the attention prompt must contain {SENTENCE_SLOT} exactly once")
        self._tokenizer = tokenizer
        self._examine = examine
        self._attention = attention

    def encode_chat(self, user_text: str, image_tokens: int) -> tuple[int, ...]:
        """The token ids of :func:`render_chat` for ``user_text``, ready for generation."""
        text = expand_image_pad(render_chat(user_text), image_tokens)
        return tuple(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def examine(self, image_tokens: int) -> tuple[int, ...]:
        return self.encode_chat(self._examine, image_tokens)

    def attention(self, sentence: str, image_tokens: int) -> tuple[int, ...]:
        return self.encode_chat(attention_text(self._attention, sentence), image_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
