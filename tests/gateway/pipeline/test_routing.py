"""Routing rules: pure decisions on instance facts, and their validation as settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydicom.uid import ComputedRadiographyImageStorage, CTImageStorage

from gateway.config import ConfigError, load_settings
from gateway.config.pipeline import Condition, RoutingRule
from gateway.pipeline.routing import InstanceFacts, condition_holds, explain_rules, route_study

CHEST_RULES = load_settings(environ={}).routing.rules


def facts(uid: str = "1.1", **values: str | None) -> InstanceFacts:
    defaults: dict[str, str | None] = {"modality": "CR", "body_part": "CHEST", "view_position": "PA"}
    return InstanceFacts(sop_instance_uid=uid, **{**defaults, **values})


def rule(**values: object) -> RoutingRule:
    return RoutingRule.model_validate({"name": "r", "match": {}, **values})


def test_a_frontal_chest_cr_is_analysed_and_goes_to_every_destination() -> None:
    decision = route_study(CHEST_RULES, [facts()], ["pacs", "archive"])
    assert decision.routed and decision.rule == "chest-radiograph"
    assert [f.sop_instance_uid for f in decision.analyze] == ["1.1"]
    assert decision.destinations == ("archive", "pacs")
    assert decision.outputs == ("sr", "seg", "gsps")


@pytest.mark.parametrize(
    ("values", "routed"),
    [
        ({"modality": "DX"}, True),
        ({"body_part": "chest "}, True),  # exact lists compare case-insensitively, trimmed
        ({"body_part": None, "view_position": "AP"}, True),  # no body part, but a frontal view
        ({"body_part": None, "view_position": "LL"}, False),
        ({"body_part": None, "view_position": None}, False),
        ({"body_part": "ABDOMEN"}, False),
        ({"modality": "CT"}, False),
        ({"body_part": "CHEST", "view_position": None}, True),  # body part CHEST without a view: analysed
    ],
)
def test_the_default_chest_rule(values: dict[str, Any], routed: bool) -> None:
    assert route_study(CHEST_RULES, [facts(**values)], ["archive"]).routed is routed


def test_lateral_views_are_kept_as_context_and_frontal_ones_analysed() -> None:
    decision = route_study(CHEST_RULES, [facts("1.1", view_position="PA"), facts("1.2", view_position="LL")], [])
    assert [f.sop_instance_uid for f in decision.analyze] == ["1.1"]
    assert [f.sop_instance_uid for f in decision.context] == ["1.2"]
    assert "1 instance(s) analysed, 1 kept as context" in decision.reason
    assert "no destination configured" in decision.reason


def test_a_study_with_only_a_lateral_is_not_routed_and_says_why() -> None:
    decision = route_study(CHEST_RULES, [facts(view_position="LATERAL")], ["archive"])
    assert not decision.routed
    assert "rule chest-radiograph takes 1 instance(s) but selects none to analyse" in decision.reason
    assert "view_position 'LATERAL' is not one of [PA, AP, (absent)]" in decision.reason


def test_a_non_chest_study_is_not_routed_with_the_failing_conditions() -> None:
    decision = route_study(CHEST_RULES, [facts(modality="CT", body_part="HEAD")], ["archive"])
    assert not decision.routed and decision.analyze == ()
    assert decision.reason == (
        "not routed: no rule takes any of its 1 instance(s); chest-radiograph: "
        "modality 'CT' is not one of [CR, DX] / modality 'CT' is not one of [CR, DX]"
    )


def test_rules_are_ordered_and_the_first_that_takes_an_instance_wins() -> None:
    first = rule(name="from-er", match={"calling_ae": ["ER_CR"]}, destinations=["er"], outputs=["sr"])
    rules = [first, *CHEST_RULES]
    decision = route_study(rules, [facts(calling_ae="ER_CR")], ["er", "pacs"])
    assert (decision.rule, decision.destinations, decision.outputs) == ("from-er", ("er",), ("sr",))
    assert route_study(rules, [facts(calling_ae="WARD")], ["er", "pacs"]).rule == "chest-radiograph"


def test_regex_negation_and_null_match_absent_values() -> None:
    assert condition_holds(Condition.model_validate({"regex": "^PORT"}), "PORTABLE CHEST")
    assert not condition_holds(Condition.model_validate({"regex": "^PORT"}), None)
    assert condition_holds(Condition.model_validate({"regex": "^$"}), None)
    assert condition_holds(Condition.model_validate({"in": ["LL", "RL"], "negate": True}), "PA")
    assert not condition_holds(Condition.model_validate({"in": ["LL", "RL"], "negate": True}), "ll")
    assert condition_holds(Condition.model_validate([None]), None)
    assert condition_holds(Condition.model_validate("CR"), "cr")
    assert condition_holds(Condition.model_validate({"regex": "LAT", "negate": True}), None)


def test_every_field_can_be_tested() -> None:
    instance = facts(
        sop_class=str(ComputedRadiographyImageStorage),
        laterality="L",
        series_description="Chest PA portable",
        calling_ae="MODALITY1",
        called_ae="GAZEX",
    )
    matching = rule(
        match={
            "modality": ["CR"],
            "sop_class": ["ComputedRadiographyImageStorage"],  # keywords become UIDs
            "body_part": {"regex": "CH"},
            "view_position": {"in": ["LL"], "negate": True},
            "laterality": ["L"],
            "series_description": {"regex": "(?i).*portable"},
            "calling_ae": ["MODALITY1"],
            "called_ae": ["GAZEX"],
        }
    )
    assert route_study([matching], [instance], []).routed
    for field, condition in [("sop_class", [str(CTImageStorage)]), ("called_ae", ["OTHER"]), ("laterality", ["R"])]:
        assert not route_study([rule(match={field: condition})], [instance], []).routed


def test_gazex_rules_test_explains_each_condition() -> None:
    lines = explain_rules(CHEST_RULES, facts(view_position="LL"))
    assert lines[0] == "rule 1 chest-radiograph: TAKES this instance"
    assert "    ✓ modality 'CR' is one of [CR, DX]" in lines
    assert "  analyze: no, kept as context" in lines
    assert lines[-1] == "result: rule chest-radiograph routes this instance's study; this instance is kept as context"
    assert explain_rules(CHEST_RULES, facts(modality="MR"))[-1].startswith("result: no rule takes this instance")


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ([{"name": "a", "match": {"modality": {"regex": "("}}}], "does not compile"),
        ([{"name": "a", "match": {"modality": {"in": ["CR"], "regex": "CR"}}}], "exactly one of 'in'"),
        ([{"name": "a", "match": {"modality": {"in": []}}}], "at least one value"),
        ([{"name": "a", "match": {"sop_class": ["NotAClass"]}}], "is not a storage SOP class"),
        ([{"name": "a", "match": {"colour": ["red"]}}], "unknown key"),
        ([{"name": "a", "match": {}, "outputs": ["pdf"]}], "Input should be 'sr', 'seg', 'gsps', 'text_sr' or 'sc'"),
        ([{"name": "a", "match": {}}, {"name": "a", "match": {}}], "rule names must be unique; repeated: a"),
        ([{"name": "a", "match": []}], "at least 1 item"),
        ([{"name": "a", "match": {}, "destinations": ["pacs"]}], "sends to 'pacs', which is not in destinations"),
        ([{"name": "bad name", "match": {}}], "is not a valid name"),
    ],
)
def test_bad_rules_are_refused_at_start_up_with_the_key(rules: list[dict[str, object]], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_settings(overrides={"routing": {"rules": rules}}, environ={})
