"""The attention-answer parser: GazeX's format, drift it tolerates, garbage it rejects, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.geometry import DownscaledFrame, ImageGeometry, ModelRegion, NormalizedFrame
from inference.parsing import format_attention, parse_attention

TRAINING_FORMAT = (
    "visual clues : [(101,203)(150,260)(125,231),(300,120)(420,260)(360,190)] "
    "observation : [(90,190)(430,270)(260,230)]"
)


def test_gazex_training_format() -> None:
    parsed = parse_attention(TRAINING_FORMAT)
    assert parsed.clues == (ModelRegion(101, 203, 150, 260, 125, 231), ModelRegion(300, 120, 420, 260, 360, 190))
    assert parsed.observation == ModelRegion(90, 190, 430, 270, 260, 230)
    assert parsed.dropped == ()


def test_prompt_format_with_spaces_and_commas() -> None:
    text = "visual clues: [(1, 2)(3, 4)(2, 3), (5, 6)(7, 8)(6, 7)], observation: [(0, 0)(9, 9)(4.5, 4.5)]"
    parsed = parse_attention(text)
    assert len(parsed.clues) == 2
    assert parsed.observation == ModelRegion(0, 0, 9, 9, 4.5, 4.5)
    assert parsed.dropped == ()


@pytest.mark.parametrize(
    "text",
    [
        "Visual Clues:[(1,2)(3,4)(2,3)]\nObservation:[(0,0)(9,9)(4,4)]",
        "visual clues : [ ( 1 , 2 ) ( 3 , 4 ) ( 2 , 3 ) ] observation : [ ( 0 , 0 ) ( 9 , 9 ) ( 4 , 4 ) ]",
        "visual_clues [(1,2)(3,4)(2,3)] observation area: [(0,0)(9,9)(4,4)]",
        "Sure. visual clues: [(1,2)(3,4)(2,3)]; observation: [(0,0)(9,9)(4,4)]. Done.",
        "visual clues: [(1,2) (3,4) (2,3)], observation: [(0,0) (9,9) (4,4)]",
    ],
)
def test_drift_in_whitespace_case_and_separators(text: str) -> None:
    parsed = parse_attention(text)
    assert parsed.clues == (ModelRegion(1, 2, 3, 4, 2, 3),)
    assert parsed.observation == ModelRegion(0, 0, 9, 9, 4, 4)
    assert parsed.dropped == ()


def test_observation_only_answers_are_fine() -> None:
    """GazeX's training data has answers without clues."""
    parsed = parse_attention("observation : [(90,190)(430,270)(260,230)]")
    assert parsed.clues == ()
    assert parsed.observation == ModelRegion(90, 190, 430, 270, 260, 230)
    assert parsed.dropped == ()


def test_empty_clue_list() -> None:
    parsed = parse_attention("visual clues : [] observation : [(1,1)(2,2)(1,1)]")
    assert parsed.clues == () and parsed.dropped == ()


def test_malformed_clues_are_dropped_and_counted() -> None:
    text = (
        "visual clues: [(1,2)(3,4)(2,3), (5,6)(7,8), (xmin2, ymin2)(xmax2, ymax2)(centroidx2, centroidy2), "
        "(9,9)(10,10)(9.5,9.5), ...] observation: [(0,0)(9,9)(4,4)]"
    )
    parsed = parse_attention(text)
    assert parsed.clues == (ModelRegion(1, 2, 3, 4, 2, 3), ModelRegion(9, 9, 10, 10, 9.5, 9.5))
    assert len(parsed.dropped) == 2
    assert all(reason.startswith("visual clue:") for reason in parsed.dropped)


def test_truncated_answer_keeps_complete_clues() -> None:
    parsed = parse_attention("visual clues : [(1,2)(3,4)(2,3),(5,6)(7,8)(6")
    assert parsed.clues == (ModelRegion(1, 2, 3, 4, 2, 3),)
    assert parsed.observation is None
    assert "observation: missing" in parsed.dropped
    assert any(r.startswith("visual clue:") for r in parsed.dropped)


def test_missing_closing_bracket_before_observation() -> None:
    parsed = parse_attention("visual clues: [(1,2)(3,4)(2,3), observation: [(0,0)(9,9)(4,4)]")
    assert parsed.clues == (ModelRegion(1, 2, 3, 4, 2, 3),)
    assert parsed.observation == ModelRegion(0, 0, 9, 9, 4, 4)


def test_extra_observations_are_dropped() -> None:
    parsed = parse_attention("observation: [(0,0)(9,9)(4,4),(1,1)(2,2)(1,1)]")
    assert parsed.observation == ModelRegion(0, 0, 9, 9, 4, 4)
    assert parsed.dropped == ("observation: extra region 2 ignored",)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The heart size is normal.",
        "visual clues",
        "observation: []",
        "observation: [(a,b)(c,d)(e,f)]",
        "observation: [(1,2)(3,4)]",
        "observation: [(1e5,2)(3,4)(5,6)]",
        "observation: [(1234567890123,2)(3,4)(5,6)]",
        "]]]]((((,,,,",
        "<|im_end|>",
    ],
)
def test_garbage_gives_no_regions(text: str) -> None:
    parsed = parse_attention(text)
    assert parsed.clues == ()
    assert parsed.observation is None
    assert parsed.dropped  # the missing observation is always counted


numbers = st.integers(min_value=0, max_value=5000)
regions = st.builds(ModelRegion, numbers, numbers, numbers, numbers, numbers, numbers)


@given(st.lists(regions, max_size=8), st.one_of(st.none(), regions))
def test_formatted_answers_parse_back(clues: list[ModelRegion], observation: ModelRegion | None) -> None:
    parsed = parse_attention(format_attention(tuple(clues), observation))
    assert parsed.clues == tuple(clues)
    assert parsed.observation == observation


@given(st.lists(regions, min_size=1, max_size=5), regions, st.sampled_from([" ", "", "\n", "  "]))
def test_spacing_drift_parses_the_same(clues: list[ModelRegion], observation: ModelRegion, gap: str) -> None:
    def region(r: ModelRegion) -> str:
        return f"({gap}{r.x0:g},{gap}{r.y0:g}){gap}({r.x1:g},{gap}{r.y1:g}){gap}({r.cx:g},{gap}{r.cy:g})"

    text = f"visual clues{gap}:{gap}[" + f",{gap}".join(region(c) for c in clues) + f"]{gap}, observation{gap}:"
    text += f"{gap}[{region(observation)}]"
    parsed = parse_attention(text)
    assert parsed.clues == tuple(clues)
    assert parsed.observation == observation
    assert parsed.dropped == ()


@given(st.text())
@settings(max_examples=300)
def test_never_raises_on_any_text(text: str) -> None:
    parsed = parse_attention(text)
    assert len(parsed.clues) <= text.count("(") // 3


alphabet = st.sampled_from(list("visual clues observation:[](),0123456789.- \n"))


@given(st.text(alphabet=alphabet, max_size=200))
@settings(max_examples=300)
def test_never_raises_on_near_miss_text(text: str) -> None:
    parse_attention(text)


wild = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: round(v, 2))
wild_regions = st.builds(ModelRegion, wild, wild, wild, wild, wild, wild)
answers = st.one_of(
    st.text(alphabet=alphabet, max_size=200),
    st.builds(lambda c, o: format_attention(tuple(c), o), st.lists(wild_regions, max_size=5), wild_regions),
)


@given(
    answers,
    st.integers(min_value=1, max_value=4000),
    st.integers(min_value=1, max_value=4000),
    st.sampled_from([DownscaledFrame(4.0), NormalizedFrame(1000.0)]),
)
@settings(max_examples=300)
def test_nothing_outside_the_image_after_mapping(text: str, rows: int, columns: int, frame) -> None:
    geometry = ImageGeometry(rows, columns, frame, input_rows=28, input_columns=28)
    parsed = parse_attention(text)
    for region in (*parsed.clues, parsed.observation):
        if region is None:
            continue
        mapped = geometry.region_to_source(region)
        if mapped is not None:
            assert 0 <= mapped.box.x0 < mapped.box.x1 <= columns
            assert 0 <= mapped.box.y0 < mapped.box.y1 <= rows
