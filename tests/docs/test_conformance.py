"""The generated parts of the docs agree with the code: conformance statement and configuration reference.

When a test here fails after a change to the code, run ``python -m gateway.docgen --write`` and
review the diff of ``docs/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

import dicom_sr
from gateway.config.reference import documented_keys, environment_variable, reference_blocks
from gateway.config.settings import Settings
from gateway.conformance import STORE_STATUS_MEANINGS, STOW_ONLY_STATUSES, conformance_blocks
from gateway.dicom.store import StoreStatus
from gateway.docgen import WRITE_COMMAND, MarkerError, main, render_page
from gateway.pipeline.outbox import OUTPUT_KIND_BY_SOP_CLASS
from gateway.pipeline.sender import PROPOSED_TRANSFER_SYNTAXES
from tests.conftest import missing_prerequisite
from tests.dicom_sr.helpers import WHEN, study_analysis
from tests.gateway.test_config import leaf_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO_ROOT / "docs" / "conformance.md"
REFERENCE = REPO_ROOT / "docs" / "configuration-reference.md"


def _assert_current(path: Path, blocks: dict[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    rendered = render_page(text, blocks, where=str(path.relative_to(REPO_ROOT)))
    assert rendered == text, (
        f"{path.relative_to(REPO_ROOT)} and the code disagree; run `{WRITE_COMMAND}` and review the diff"
    )


def test_the_conformance_statement_matches_the_code() -> None:
    _assert_current(CONFORMANCE, conformance_blocks())


def test_the_configuration_reference_matches_the_code() -> None:
    _assert_current(REFERENCE, reference_blocks())


def test_the_reference_documents_every_key_and_its_environment_variable() -> None:
    page = REFERENCE.read_text(encoding="utf-8")
    keys = leaf_keys(Settings)
    assert documented_keys() == keys
    for key in keys:
        assert f"| `{key}` |" in page, f"docs/configuration-reference.md does not document {key}"
        assert f"`{environment_variable(key)}`" in page, f"docs/configuration-reference.md lacks the variable of {key}"
    assert environment_variable("dicom.timeouts.acse") == "GAZEX_DICOM__TIMEOUTS__ACSE"


def test_the_statement_lists_the_contexts_the_node_and_the_sender_use() -> None:
    page = CONFORMANCE.read_text(encoding="utf-8")
    for uid in Settings().dicom.sop_class_uids() + Settings().dicom.transfer_syntax_uids():
        assert f"`{uid}`" in page
    for sent in [*OUTPUT_KIND_BY_SOP_CLASS, *PROPOSED_TRANSFER_SYNTAXES]:
        assert f"`{sent}`" in page
    c_store = set(StoreStatus) - STOW_ONLY_STATUSES  # C-STORE never answers those (docs/dicomweb.md lists them)
    for status in c_store:
        assert f"`0x{status:04X}`" in page
    assert set(STORE_STATUS_MEANINGS) == c_store


@pytest.fixture(scope="module")
def outputs() -> list[Dataset]:
    from pydicom.data import get_testdata_file

    found = get_testdata_file("RG1_UNCR.dcm")
    if found is None:
        missing_prerequisite("the NEMA chest CR RG1_UNCR.dcm is not available; install it: pip install pydicom-data")
    source = pydicom.dcmread(str(found))
    return dicom_sr.encode(
        study_analysis(source), [source], dicom_sr.OUTPUT_KINDS, analysis_id="docs-1", content_datetime=WHEN
    )


def test_every_output_has_the_sop_class_the_statement_names_and_a_proposed_transfer_syntax(
    outputs: list[Dataset],
) -> None:
    kinds = [OUTPUT_KIND_BY_SOP_CLASS[str(dataset.SOPClassUID)] for dataset in outputs]
    assert set(kinds) == set(dicom_sr.OUTPUT_KINDS)
    for dataset in outputs:
        assert dataset.file_meta.TransferSyntaxUID in PROPOSED_TRANSFER_SYNTAXES, (
            f"{dataset.SOPClassUID.name} is written in {dataset.file_meta.TransferSyntaxUID.name}, "
            "which the sender does not propose"
        )


def _codes(dataset: Dataset) -> Iterator[tuple[str, str, str]]:
    for element in dataset:
        if element.VR != "SQ":
            continue
        for item in element.value:
            if "CodeValue" in item and "CodingSchemeDesignator" in item:
                yield str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.get("CodeMeaning", ""))
            yield from _codes(item)


def test_every_private_code_an_output_uses_is_in_the_code_table(outputs: list[Dataset]) -> None:
    documented = {(code.value, code.scheme_designator, code.meaning) for _, code in dicom_sr.terminology()}
    used = {code for dataset in outputs for code in _codes(dataset) if code[1] == dicom_sr.PRIVATE_SCHEME}
    assert used, "the fixed analysis should use private codes (a visual clue, the trajectory)"
    assert used <= documented, f"private codes missing from dicom_sr.terminology(): {sorted(used - documented)}"
    page = CONFORMANCE.read_text(encoding="utf-8")
    for value, scheme, meaning in used:
        assert f"| `{value}` | `{scheme}` | {meaning} |" in page


# -- the marker machinery ----------------------------------------------------------------


def test_render_page_replaces_only_what_lies_between_the_markers() -> None:
    text = "# Title\n\nhand-written\n<!-- generated: a -->\nold\nlines\n<!-- end: a -->\nafter\n"
    rendered = render_page(text, {"a": "| x |\n|---|\n"})
    assert rendered == "# Title\n\nhand-written\n<!-- generated: a -->\n| x |\n|---|\n<!-- end: a -->\nafter\n"
    assert render_page(rendered, {"a": "| x |\n|---|\n"}) == rendered


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- generated: a -->\n", r"the block 'a' is not closed"),
        ("<!-- end: a -->\n", r"without its start marker"),
        ("<!-- generated: b -->\n<!-- end: b -->\n", r"no generated block is called 'b'"),
        ("nothing\n", r"no markers for the generated block\(s\) a"),
        ("<!-- generated: a -->\n<!-- end: a -->\n<!-- generated: a -->\n<!-- end: a -->\n", r"appears twice"),
        ("<!-- generated: a -->\n<!-- generated: c -->\n", r"is not closed before 'c'"),
    ],
)
def test_bad_markers_are_named(text: str, message: str) -> None:
    with pytest.raises(MarkerError, match=message):
        render_page(text, {"a": "x", "c": "y"}, where="page.md")


def test_the_command_reports_a_stale_page_and_rewrites_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "docs").mkdir()
    for page in (CONFORMANCE, REFERENCE):
        shutil.copy(page, tmp_path / "docs" / page.name)
    stale = tmp_path / "docs" / "conformance.md"
    text = stale.read_text(encoding="utf-8")
    stale.write_text(text.replace("| Verification SOP Class | `1.2.840.10008.1.1` | SCP |\n", ""), encoding="utf-8")
    assert main(["--root", str(tmp_path)]) == 1
    assert WRITE_COMMAND in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "--write"]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert main(["--root", str(tmp_path)]) == 0
