"""The finding vocabulary's codes and the private coding scheme."""

from __future__ import annotations

from pydicom.sr.codedict import codes as dcm_codes

from dicom_sr import codes
from inference.results import FINDING_LABELS


def test_every_finding_label_has_a_code() -> None:
    assert set(codes.FINDING_CODES) == set(FINDING_LABELS)
    assert len({(c.value, c.scheme_designator) for c in codes.FINDING_CODES.values()}) == len(FINDING_LABELS)


def test_standard_codes_come_from_the_dictionary() -> None:
    assert codes.finding_code("pleural_effusion") == dcm_codes.SCT.PleuralEffusion
    assert codes.finding_code("pleural_effusion").value == "60046008"
    assert codes.finding_code("pneumothorax").value == "36118008"
    assert codes.finding_code("lung_opacity") == dcm_codes.DCM.Opacity
    assert codes.finding_code("chest_tube").value == "112173"
    for label, code in codes.FINDING_CODES.items():
        if code.scheme_designator in ("SCT", "DCM"):
            scheme = getattr(dcm_codes, code.scheme_designator)
            assert any(getattr(scheme, name) == code for name in scheme.dir()), label


def test_private_codes_fit_dicom_and_are_declared() -> None:
    for code in codes.private_codes():
        assert code.scheme_designator == "99GAZEX"
        assert 0 < len(code.value) <= 16  # SH
        assert code.value == code.value.upper()
        assert len(code.meaning) <= 64  # LO
    (item,) = codes.coding_scheme_identification()
    assert item.CodingSchemeDesignator == "99GAZEX"
    assert item.CodingSchemeName and item.CodingSchemeResponsibleOrganization


def test_segment_categories() -> None:
    assert codes.segment_category("pleural_effusion").value == "49755003"  # morphologically abnormal structure
    assert codes.segment_category("endotracheal_tube").value == "260787004"  # physical object
    assert codes.segment_category("no_finding").value == "91723000"  # anatomical structure


def test_unknown_label_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="FINDING_LABELS"):
        codes.finding_code("unicorn")
