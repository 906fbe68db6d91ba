"""Text made encodable in the source's character set."""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicom_sr.common import charset_encodings, encodable_text


def test_latin1_keeps_accents_and_replaces_the_rest() -> None:
    assert encodable_text("Épanchement — 2 cm → ok", ["latin_1"]) == "Épanchement - 2 cm ? ok"


def test_ascii_strips_accents() -> None:
    assert encodable_text("Épanchement “pleural” …", ["ascii"]) == 'Epanchement "pleural" ...'


def test_utf8_keeps_everything() -> None:
    text = "Épanchement — 胸水"
    assert encodable_text(text, ["UTF8"]) == text


def test_single_line_values_lose_control_characters_and_backslashes() -> None:
    assert encodable_text("a\\b\nc", ["ascii"], single_line=True) == "a/b c"
    assert encodable_text("a\\b\nc", ["ascii"]) == "a\\b\nc"


def test_long_values_are_shortened_with_an_ellipsis() -> None:
    shortened = encodable_text("x" * 100, ["ascii"], max_length=64)
    assert len(shortened) == 64 and shortened.endswith("...")


def test_charset_of_a_dataset() -> None:
    dataset = Dataset()
    assert charset_encodings(dataset) == ("ascii",)
    dataset.SpecificCharacterSet = "ISO_IR 100"
    assert charset_encodings(dataset) == ("latin_1",)
    dataset.SpecificCharacterSet = ["ISO 2022 IR 6", "ISO 2022 IR 87"]
    assert "iso2022_jp" in charset_encodings(dataset)
