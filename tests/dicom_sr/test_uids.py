"""Deterministic UIDs."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from dicom_sr.uids import UidFactory, model_device_uid
from inference.testing import FAKE_IDENTITY

UID_PATTERN = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


def test_same_inputs_give_the_same_uid() -> None:
    first = UidFactory("1.2.3", ["1.2.3.4", "1.2.3.5"], FAKE_IDENTITY, "job-1")
    again = UidFactory("1.2.3", ["1.2.3.5", "1.2.3.4"], FAKE_IDENTITY, "job-1")  # order does not matter
    assert first.uid("sr", "instance") == again.uid("sr", "instance")
    assert UID_PATTERN.match(first.uid("sr", "instance"))
    assert len(first.uid("sr", "instance")) <= 64


@pytest.mark.parametrize(
    "other",
    [
        UidFactory("1.2.3", ["1.2.3.4", "1.2.3.5"], FAKE_IDENTITY, "job-2"),
        UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1"),
        UidFactory("1.2.9", ["1.2.3.4", "1.2.3.5"], FAKE_IDENTITY, "job-1"),
        UidFactory("1.2.3", ["1.2.3.4", "1.2.3.5"], replace(FAKE_IDENTITY, checkpoint_sha256="1" * 64), "job-1"),
        UidFactory("1.2.3", ["1.2.3.4", "1.2.3.5"], replace(FAKE_IDENTITY, version="2"), "job-1"),
    ],
)
def test_any_change_of_analysis_sources_or_model_gives_new_uids(other: UidFactory) -> None:
    base = UidFactory("1.2.3", ["1.2.3.4", "1.2.3.5"], FAKE_IDENTITY, "job-1")
    assert base.uid("sr", "instance") != other.uid("sr", "instance")


def test_roles_give_different_uids() -> None:
    factory = UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1")
    roles = [("sr", "series"), ("sr", "instance"), ("seg", "series"), ("seg", "instance", "1.2.3.4")]
    assert len({factory.uid(*role) for role in roles}) == len(roles)
    with pytest.raises(ValueError, match="role"):
        factory.uid()


def test_device_uid_depends_on_the_model_only() -> None:
    assert model_device_uid(FAKE_IDENTITY) == model_device_uid(replace(FAKE_IDENTITY))
    assert model_device_uid(FAKE_IDENTITY) != model_device_uid(replace(FAKE_IDENTITY, version="9"))
    assert UID_PATTERN.match(model_device_uid(FAKE_IDENTITY))
