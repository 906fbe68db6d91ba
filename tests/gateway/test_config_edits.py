"""The edits of the live configuration document: pure functions, checked without a database."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.config import Settings, edits, load_settings
from gateway.config.edits import EditError
from gateway.config.live import ConfigRejected, managed_document, settings_with


@pytest.fixture
def base() -> Settings:
    return load_settings(
        overrides={
            "destinations": {
                "archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104},
                "research": {"ae_title": "RESEARCH", "host": "127.0.0.1", "port": 105},
            },
            "routing": {
                "rules": [
                    {"name": "chest", "match": {"modality": ["CR", "DX"]}, "destinations": ["archive"]},
                    {"name": "research", "match": {"modality": ["CT"]}, "destinations": ["research", "archive"]},
                    {"name": "any", "match": {}},
                ]
            },
        },
        environ={},
    )


@pytest.fixture
def document(base: Settings) -> dict[str, Any]:
    return managed_document(base)


def rule_names(document: dict[str, Any]) -> list[str]:
    return [rule["name"] for rule in document["routing"]["rules"]]


def test_an_edit_returns_a_new_document_and_leaves_its_input_alone(document: dict[str, Any]) -> None:
    before = copy.deepcopy(document)
    changed = edits.add_caller(document, {"ae_title": "MOD1", "host": "10.0.0.7"})
    assert document == before
    assert changed["dicom"]["allowed_callers"][-1] == {"ae_title": "MOD1", "host": "10.0.0.7"}


def test_ae_titles_and_flags(base: Settings, document: dict[str, Any]) -> None:
    changed = edits.set_ae_titles(document, ["GAZEX", "GAZEX2"])
    changed = edits.set_flags(changed, reject_unknown_callers=False)
    settings = settings_with(base, changed)
    assert settings.dicom.ae_titles == ["GAZEX", "GAZEX2"]
    assert settings.dicom.reject_unknown_callers is False
    assert settings.dicom.require_called_ae_title is True  # None left it as it was
    with pytest.raises(EditError) as caught:
        edits.set_flags(document, require_called_ae_title="yes")  # type: ignore[arg-type]
    assert caught.value.kind == "invalid" and "true or false" in caught.value.message
    with pytest.raises(EditError, match="list of AE titles"):
        edits.set_ae_titles(document, "GAZEX")  # type: ignore[arg-type]


def test_a_repeated_ae_title_is_refused_by_the_models(base: Settings, document: dict[str, Any]) -> None:
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, edits.set_ae_titles(document, ["GAZEX", "GAZEX"]))
    assert caught.value.kind == "invalid"
    assert "dicom.ae_titles" in str(caught.value) and "must not repeat a title" in str(caught.value)


def test_callers_are_added_updated_and_removed_by_index(document: dict[str, Any]) -> None:
    count = len(document["dicom"]["allowed_callers"])
    changed = edits.add_caller(document, {"ae_title": "MOD1", "host": "10.0.0.7"})
    changed = edits.update_caller(changed, count, {"ae_title": "MOD1", "host": "10.0.0.0/24"})
    assert changed["dicom"]["allowed_callers"][count] == {"ae_title": "MOD1", "host": "10.0.0.0/24"}
    changed = edits.remove_caller(changed, 0)
    assert len(changed["dicom"]["allowed_callers"]) == count
    assert changed["dicom"]["allowed_callers"][-1]["ae_title"] == "MOD1"


def test_a_duplicate_caller_is_a_conflict_even_when_written_differently(document: dict[str, Any]) -> None:
    changed = edits.add_caller(document, {"ae_title": "MOD1", "host": "10.0.0.7"})
    with pytest.raises(EditError) as caught:
        edits.add_caller(changed, {"ae_title": " MOD1 ", "host": "10.0.0.7"})
    assert caught.value.kind == "conflict"
    assert "already allows 'MOD1' from 10.0.0.7" in caught.value.message
    index = len(changed["dicom"]["allowed_callers"]) - 1
    edits.update_caller(changed, index, {"ae_title": "MOD1", "host": "10.0.0.7"})  # itself: not a duplicate
    with pytest.raises(EditError) as caught:
        edits.update_caller(changed, 0, {"ae_title": "MOD1", "host": "10.0.0.7"})
    assert caught.value.kind == "conflict"


def test_a_caller_index_that_does_not_exist_is_not_found(document: dict[str, Any]) -> None:
    for index in (len(document["dicom"]["allowed_callers"]), -1):
        with pytest.raises(EditError) as caught:
            edits.remove_caller(document, index)
        assert caught.value.kind == "not_found"
        assert "indexes are 0 to 1" in caught.value.message
    with pytest.raises(EditError) as caught:
        edits.update_caller(document, 7, {"ae_title": "X"})
    assert caught.value.kind == "not_found"


def test_an_invalid_caller_is_reported_with_its_key_path(base: Settings, document: dict[str, Any]) -> None:
    changed = edits.add_caller(document, {"ae_title": "MOD1", "host": "10.0.0.0/33"})
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, changed)
    assert "dicom.allowed_callers[2].host" in str(caught.value)
    assert "not a valid CIDR network" in str(caught.value)
    with pytest.raises(EditError) as not_a_mapping:
        edits.add_caller(document, ["MOD1"])  # type: ignore[arg-type]
    assert not_a_mapping.value.kind == "invalid"


def test_destinations_are_put_and_deleted(base: Settings, document: dict[str, Any]) -> None:
    body = {"ae_title": "PACS2", "host": "10.1.1.1", "port": 11112}
    changed = edits.put_destination(document, "pacs2", body)
    assert settings_with(base, changed).destinations["pacs2"].port == 11112
    replaced = edits.put_destination(changed, "pacs2", {**body, "port": 4242})
    assert settings_with(base, replaced).destinations["pacs2"].port == 4242
    removed = edits.delete_destination(replaced, "pacs2")
    assert "pacs2" not in settings_with(base, removed).destinations


def test_a_destination_named_by_rules_cannot_be_deleted(document: dict[str, Any]) -> None:
    with pytest.raises(EditError) as caught:
        edits.delete_destination(document, "archive")
    assert caught.value.kind == "conflict"
    assert "chest, research" in caught.value.message
    with pytest.raises(EditError) as missing:
        edits.delete_destination(document, "nowhere")
    assert missing.value.kind == "not_found" and "archive, research" in missing.value.message


def test_a_bad_destination_port_is_refused(base: Settings, document: dict[str, Any]) -> None:
    changed = edits.put_destination(document, "pacs2", {"ae_title": "PACS2", "host": "h", "port": 70000})
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, changed)
    assert "destinations.pacs2.port" in str(caught.value) and "65535" in str(caught.value)
    assert caught.value.problems == ["destinations.pacs2.port = 70000: Input should be less than or equal to 65535"]


def test_rules_are_put_in_place_appended_or_inserted(base: Settings, document: dict[str, Any]) -> None:
    replaced = edits.put_rule(document, "research", {"match": {"modality": ["MR"]}})
    assert rule_names(replaced) == ["chest", "research", "any"]
    assert settings_with(base, replaced).routing.rules[1].destinations is None
    appended = edits.put_rule(document, "late", {"match": {"modality": ["US"]}})
    assert rule_names(appended) == ["chest", "research", "any", "late"]
    first = edits.put_rule(document, "early", {"name": "early", "match": {"modality": ["US"]}}, position=0)
    assert rule_names(first) == ["early", "chest", "research", "any"]
    moved_while_put = edits.put_rule(document, "any", {"match": {}}, position=0)
    assert rule_names(moved_while_put) == ["any", "chest", "research"]
    with pytest.raises(EditError) as caught:
        edits.put_rule(document, "early", {"name": "other", "match": {}})
    assert caught.value.kind == "invalid"
    with pytest.raises(EditError) as out_of_range:
        edits.put_rule(document, "early", {"match": {}}, position=4)
    assert out_of_range.value.kind == "invalid" and "from 0 to 3" in out_of_range.value.message


def test_rules_are_moved_and_deleted(document: dict[str, Any]) -> None:
    assert rule_names(edits.move_rule(document, "any", 0)) == ["any", "chest", "research"]
    assert rule_names(edits.move_rule(document, "chest", 2)) == ["research", "any", "chest"]
    assert rule_names(edits.delete_rule(document, "research")) == ["chest", "any"]
    with pytest.raises(EditError) as caught:
        edits.move_rule(document, "chest", 3)
    assert caught.value.kind == "invalid"
    for edit in (lambda: edits.delete_rule(document, "nope"), lambda: edits.move_rule(document, "nope", 0)):
        with pytest.raises(EditError) as missing:
            edit()
        assert missing.value.kind == "not_found" and "chest, research, any" in missing.value.message


def test_a_rule_that_does_not_compile_or_names_an_unknown_destination_is_refused(
    base: Settings, document: dict[str, Any]
) -> None:
    bad_regex = edits.put_rule(document, "bad", {"match": [{"series_description": {"regex": "(["}}]})
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, bad_regex)
    assert "routing.rules[3].match[0].series_description" in str(caught.value)
    assert "does not compile" in str(caught.value)
    unknown = edits.put_rule(document, "elsewhere", {"match": {}, "destinations": ["nowhere"]})
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, unknown)
    assert "routing.rules[3] (elsewhere) sends to 'nowhere', which is not in destinations" in str(caught.value)
    repeated = edits.put_rule(document, "chest2", {"name": "chest2", "match": {}})
    repeated["routing"]["rules"][-1]["name"] = "chest"
    with pytest.raises(ConfigRejected, match="rule names must be unique; repeated: chest"):
        settings_with(base, repeated)


def test_sections_that_are_not_live_are_refused(base: Settings, document: dict[str, Any]) -> None:
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, {**document, "storage": {"data_dir": "/tmp"}})
    assert "storage: not a live setting" in str(caught.value)
    dicom = {**document["dicom"], "port": 104}
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, {**document, "dicom": dicom})
    assert "dicom.port: not a live setting" in str(caught.value)
    unknown_key = edits.put_destination(document, "x", {"ae_title": "X", "host": "h", "port": 1, "colour": "red"})
    with pytest.raises(ConfigRejected) as caught:
        settings_with(base, unknown_key)
    assert "destinations.x.colour: unknown key" in str(caught.value) and "allowed keys here" in str(caught.value)


def test_the_document_round_trips_through_the_models(base: Settings, document: dict[str, Any]) -> None:
    assert managed_document(settings_with(base, document)) == document
    assert settings_with(base, document) == base
    keyworded = edits.put_rule(document, "cr", {"match": {"sop_class": ["ComputedRadiographyImageStorage"]}})
    normalised = managed_document(settings_with(base, keyworded))
    assert normalised["routing"]["rules"][-1]["match"][0]["sop_class"]["in"] == ["1.2.840.10008.5.1.4.1.1.1"]
