"""Deterministic UIDs."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from pydicom.dataset import Dataset

from dicom_sr import EncodeSettings, encode
from dicom_sr.uids import MAX_UID_ROOT_LENGTH, MIN_SUFFIX_DIGITS, UidFactory, check_uid_root, model_device_uid
from inference.testing import FAKE_IDENTITY
from tests.dicom_sr.helpers import WHEN, study_analysis

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


ROOT = "1.2.826.0.1.3680043.10.999"
INSTALLATION_A = "0b7f9a52-6a0e-4a8e-9c51-3d7f1a2b4c6d"
INSTALLATION_B = "5e2c8d14-1f3a-4b7c-8e90-a1b2c3d4e5f6"


def test_two_installations_never_issue_the_same_uid_and_one_installation_repeats_its_own() -> None:
    def factory(installation: str) -> UidFactory:
        return UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1", installation_id=installation)

    roles = [("sr", "series"), ("sr", "instance"), ("seg", "instance", "1.2.3.4")]
    a, b = factory(INSTALLATION_A), factory(INSTALLATION_B)
    assert not {a.uid(*role) for role in roles} & {b.uid(*role) for role in roles}
    assert [a.uid(*role) for role in roles] == [factory(INSTALLATION_A).uid(*role) for role in roles]
    assert a.device_uid(FAKE_IDENTITY) != b.device_uid(FAKE_IDENTITY)
    assert all(UID_PATTERN.match(a.uid(*role)) for role in roles)
    # no installation id: the UIDs of earlier releases
    assert UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1").uid("sr", "instance") != a.uid("sr", "instance")


@pytest.mark.parametrize("root", ["1.2", ROOT, "2.25.1" + "0" * (38 - len("2.25.1"))])
def test_a_site_root_prefixes_every_uid_which_stays_valid_and_repeatable(root: str) -> None:
    factory = UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1", installation_id=INSTALLATION_A, root=root)
    again = UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1", installation_id=INSTALLATION_A, root=root)
    other = UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1", installation_id=INSTALLATION_B, root=root)
    uids = [factory.uid("sr", "instance"), factory.uid("sr", "series"), factory.device_uid(FAKE_IDENTITY)]
    pattern = re.compile(rf"^{re.escape(root)}\.[1-9][0-9]*$")
    for uid in uids:
        assert pattern.match(uid) and len(uid) == 64, uid
        assert len(uid) - len(root) - 1 >= MIN_SUFFIX_DIGITS
    assert len(set(uids)) == 3
    assert uids[0] == again.uid("sr", "instance") and uids[0] != other.uid("sr", "instance")


@pytest.mark.parametrize(
    ("root", "why"),
    [
        ("", "must not be empty"),
        ("1.2.03", "leading zeros"),
        ("1..2", "component ''"),
        ("1.2.", "component ''"),
        ("1.2.a", "component 'a'"),
        (" 1.2", "component ' 1'"),
        ("3.1", "must start with 0, 1 or 2"),
        ("1." + "2" * MAX_UID_ROOT_LENGTH, f"at most {MAX_UID_ROOT_LENGTH}"),
    ],
)
def test_an_invalid_uid_root_is_refused_with_the_reason(root: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        check_uid_root(root)
    if root:
        with pytest.raises(ValueError, match=re.escape(why)):
            UidFactory("1.2.3", ["1.2.3.4"], FAKE_IDENTITY, "job-1", root=root)


def test_encode_settings_carry_the_installation_into_uids_and_the_device_serial_number(chest_cr: Dataset) -> None:
    def encoded(settings: EncodeSettings) -> list[Dataset]:
        analysis = study_analysis(chest_cr)
        outputs = ("sr", "gsps")
        return encode(analysis, [chest_cr], outputs, analysis_id="job-1", content_datetime=WHEN, settings=settings)

    a = encoded(EncodeSettings(installation_id=INSTALLATION_A))
    assert [str(ds.SOPInstanceUID) for ds in a] == [
        str(ds.SOPInstanceUID) for ds in encoded(EncodeSettings(installation_id=INSTALLATION_A))
    ]
    b = encoded(EncodeSettings(installation_id=INSTALLATION_B))
    assert not {str(ds.SOPInstanceUID) for ds in a} & {str(ds.SOPInstanceUID) for ds in b}
    assert not {str(ds.SeriesInstanceUID) for ds in a} & {str(ds.SeriesInstanceUID) for ds in b}
    assert {str(ds.DeviceSerialNumber) for ds in a} == {INSTALLATION_A}
    rooted = encoded(EncodeSettings(installation_id=INSTALLATION_A, uid_root=ROOT))
    for dataset in rooted:
        devices = [item.DeviceUID for item in dataset.ContributingEquipmentSequence if "DeviceUID" in item]
        assert devices
        for uid in (dataset.SOPInstanceUID, dataset.SeriesInstanceUID, *devices):
            assert str(uid).startswith(ROOT + ".") and len(str(uid)) <= 64
    assert EncodeSettings().device_serial_number == "unregistered"
    assert EncodeSettings(device_serial_number="SN-7").device_serial_number == "SN-7"
    with pytest.raises(ValueError, match="leading zeros"):
        EncodeSettings(uid_root="1.02")
