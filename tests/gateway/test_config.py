"""Settings: defaults, the YAML file, GAZEX_* variables, flags, and errors that say what is wrong."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway.cli.config import example_text
from gateway.config import ConfigError, Settings, load_settings
from gateway.config.loading import _unwrap_model
from gateway.dicom.contexts import ALL_STORAGE, STORAGE_SOP_CLASSES


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gazex.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every settings key as a dotted path (``dicom.timeouts.acse``)."""
    keys = []
    for name, field in model.model_fields.items():
        nested = _unwrap_model(field.annotation)
        dotted = f"{prefix}{name}"
        if nested is not None and typing.get_origin(field.annotation) is not list:
            keys.extend(leaf_keys(nested, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def test_embedded_defaults_follow_the_issue() -> None:
    settings = load_settings(environ={})
    assert settings.dicom.ae_titles == ["GAZEX"]
    assert settings.dicom.port == 11112
    assert settings.storage.data_dir == Path("var")
    assert settings.storage.spool_path == Path("var/spool")
    assert settings.database_url == "sqlite:///var/gazex.db"
    # the embedded demo default accepts loopback callers only
    assert settings.dicom.reject_unknown_callers is True
    assert {(c.ae_title, c.host) for c in settings.dicom.allowed_callers} == {("*", "127.0.0.0/8"), ("*", "::1")}
    assert settings.dicom.sop_classes == ALL_STORAGE
    assert settings.dicom.tls.enabled is False


def test_default_sop_classes_include_cr_dx_and_secondary_capture() -> None:
    uids = {str(uid) for uid in load_settings(environ={}).dicom.sop_class_uids()}
    assert "1.2.840.10008.5.1.4.1.1.1" in uids  # CR
    assert "1.2.840.10008.5.1.4.1.1.1.1" in uids  # DX for presentation
    assert "1.2.840.10008.5.1.4.1.1.1.1.1" in uids  # DX for processing
    assert "1.2.840.10008.5.1.4.1.1.7" in uids  # Secondary Capture
    assert len(uids) == len(STORAGE_SOP_CLASSES)


def test_default_transfer_syntaxes_include_every_compression_the_issue_names() -> None:
    uids = {str(uid) for uid in load_settings(environ={}).dicom.transfer_syntax_uids()}
    for uid in (
        "1.2.840.10008.1.2",  # implicit VR little endian
        "1.2.840.10008.1.2.1",  # explicit VR little endian
        "1.2.840.10008.1.2.1.99",  # deflate
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.70",  # JPEG lossless
        "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.5",  # RLE
    ):
        assert uid in uids


def test_file_environment_and_flags_layer_in_that_order(tmp_path: Path) -> None:
    path = write(tmp_path, "dicom:\n  port: 104\n  max_associations: 3\nstorage:\n  data_dir: /srv/gazex\n")
    environ = {"GAZEX_DICOM__PORT": "2104", "GAZEX_DICOM__TIMEOUTS__ACSE": "null"}
    settings = load_settings(path, {"dicom": {"port": 3104}}, environ=environ)
    assert settings.dicom.port == 3104  # flag beats environment beats file
    assert settings.dicom.max_associations == 3  # file
    assert settings.dicom.timeouts.acse is None  # environment, nested, null
    assert settings.dicom.timeouts.dimse == 60.0  # default
    assert settings.database_url == "sqlite:////srv/gazex/gazex.db"
    without_flag = load_settings(path, environ=environ)
    assert without_flag.dicom.port == 2104


def test_environment_takes_json_lists_and_ignores_unrelated_gazex_variables() -> None:
    environ = {
        "GAZEX_DICOM__AE_TITLES": '["GAZEX", "GAZEX_TLS"]',
        "GAZEX_DICOM__ALLOWED_CALLERS": '[{"ae_title": "PACS", "host": "10.1.2.0/24"}]',
        "GAZEX_STORAGE__MIN_FREE_DISK": "5GiB",
        "GAZEX_REQUIRE_INTEGRATION": "1",  # the test suite's own, not a setting
        "GAZEX_TEST_POSTGRES_URL": "postgresql://x",
    }
    settings = load_settings(environ=environ)
    assert settings.dicom.ae_titles == ["GAZEX", "GAZEX_TLS"]
    assert settings.dicom.allowed_callers[0].host == "10.1.2.0/24"
    assert int(settings.storage.min_free_disk) == 5 * 1024**3


def test_an_unknown_key_names_itself_its_value_and_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "dicom:\n  prot: 104\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "dicom.prot" in message
    assert "104" in message
    assert str(path) in message
    assert "allowed keys here:" in message and "port" in message and "ae_titles" in message


def test_an_unknown_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"routes: unknown key .* allowed keys here: audit, completion, database, delivery, destinations, dicom, "
        r"dicomweb, http, model, pull, retention, routing, sources, storage, worker",
    ):
        load_settings(write(tmp_path, "routes: {}\n"), environ={})


def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "dicom:\n  port: 70000\n  max_pdu_size: 100\n  sop_classes: [CTImageStorrage]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "dicom.port = 70000" in message and "less than or equal to 65535" in message
    assert "max_pdu_size must be 0 (no limit) or from 4096" in message
    assert "'CTImageStorrage' is not a storage SOP class" in message and "ComputedRadiographyImageStorage" in message


def test_an_environment_error_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"dicom.timeouts.acse = '-1' \(set by environment variable GAZEX_DICOM__TIMEOUTS__ACSE\)"
    ):
        load_settings(environ={"GAZEX_DICOM__TIMEOUTS__ACSE": "-1"})
    with pytest.raises(ConfigError, match="GAZEX_DICOMM__PORT names no settings section"):
        load_settings(environ={"GAZEX_DICOMM__PORT": "1"})


@pytest.mark.parametrize(
    ("caller", "problem"),
    [
        ({"ae_title": "PACS", "host": "10.0.0.0/33"}, "is not a valid CIDR network"),
        ({"ae_title": "PACS", "host": "bad host!"}, "neither an IP address, a CIDR network nor a valid host name"),
        ({"ae_title": "A_TITLE_THAT_IS_TOO_LONG"}, "1 to 16 printable ASCII characters"),
        ({"ae_title": "BACK\\SLASH"}, "no backslash"),
        ({"host": "10.0.0.1"}, "ae_title"),
    ],
)
def test_allowed_callers_are_validated(caller: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_settings(overrides={"dicom": {"allowed_callers": [caller]}}, environ={})


def test_tls_needs_its_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls\.certificate and tls\.private_key must both be set"):
        load_settings(overrides={"dicom": {"tls": {"enabled": True}}}, environ={})
    with pytest.raises(ConfigError, match="does not point to a file"):
        load_settings(overrides={"dicom": {"tls": {"certificate": str(tmp_path / "missing.pem")}}}, environ={})
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match=r"tls\.ca_certificates must name the CA file"):
        load_settings(
            overrides={
                "dicom": {
                    "tls": {
                        "enabled": True,
                        "certificate": str(cert),
                        "private_key": str(cert),
                        "require_client_certificate": True,
                    }
                }
            },
            environ={},
        )


def test_yaml_errors_and_missing_files_say_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid YAML at line 2, column 9"):
        load_settings(write(tmp_path, "dicom:\n  port: : 1\n"), environ={})
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_settings(write(tmp_path, "- 1\n- 2\n"), environ={})
    with pytest.raises(ConfigError, match="does not exist; create one with: gazex config example"):
        load_settings(tmp_path / "nope.yaml", environ={})
    assert load_settings(write(tmp_path, ""), environ={}) == load_settings(environ={})


def test_settings_are_immutable() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.dicom.port = 1  # type: ignore[misc]


def test_the_example_is_complete_valid_and_rejects_unknown_callers() -> None:
    text = example_text()
    data = yaml.safe_load(text)
    settings = Settings.model_validate(data)
    assert settings.dicom.reject_unknown_callers is True
    assert any(caller.ae_title == "PACS" for caller in settings.dicom.allowed_callers)
    for key in leaf_keys(Settings):
        node: Any = data
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"the example lacks {key}"
            node = node[part]


# That every key and its environment variable is documented: tests/docs/test_conformance.py
# (docs/configuration-reference.md, generated from these models; the README no longer lists keys).


def test_a_uid_root_is_checked_and_names_what_is_wrong() -> None:
    root = "1.2.826.0.1.3680043.10.999"
    assert load_settings(overrides={"dicom": {"uid_root": root}}, environ={}).dicom.uid_root == root
    assert load_settings(environ={"GAZEX_DICOM__UID_ROOT": root}).dicom.uid_root == root
    assert load_settings(environ={}).dicom.uid_root is None
    with pytest.raises(ConfigError, match=r"dicom\.uid_root.*component '007' is not a number without leading zeros"):
        load_settings(overrides={"dicom": {"uid_root": "1.2.007"}}, environ={})
    with pytest.raises(ConfigError, match=r"dicom\.uid_root.*at most 39 leave room"):
        load_settings(overrides={"dicom": {"uid_root": "1.2." + "3" * 40}}, environ={})


def test_an_unknown_key_of_a_destination_lists_a_destinations_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "destinations:\n  pacs: {ae_title: PACS, host: pacs, port: 104, colour: red}\n")
    with pytest.raises(ConfigError, match=r"destinations\.pacs\.colour: unknown key .* allowed keys here: ae_title, "):
        load_settings(path, environ={})


def test_certificate_callers_need_the_client_cas_and_the_client_cas_need_https(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dicomweb.certificate_callers needs http.tls.client_ca_certificates"):
        load_settings(overrides={"dicomweb": {"certificate_callers": {"router.example": "ROUTER"}}}, environ={})
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    with pytest.raises(ConfigError, match=r"client_ca_certificates needs HTTPS"):
        load_settings(overrides={"http": {"tls": {"client_ca_certificates": str(ca)}}}, environ={})
