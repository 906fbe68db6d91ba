"""``$GAZEX_CONFIG`` names the configuration file when ``--config`` is not given."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main


def _config(path: Path, data_dir: Path) -> Path:
    path.write_text(f"storage:\n  data_dir: {data_dir}\n", encoding="utf-8")
    return path


def test_gazex_config_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_env = _config(tmp_path / "env.yaml", tmp_path / "env-data")
    from_flag = _config(tmp_path / "flag.yaml", tmp_path / "flag-data")
    monkeypatch.setenv("GAZEX_CONFIG", str(from_env))
    assert main(["db", "upgrade"]) == 0
    assert str(tmp_path / "env-data" / "gazex.db") in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", str(from_flag)]) == 0  # the flag wins
    assert str(tmp_path / "flag-data" / "gazex.db") in capsys.readouterr().out


def test_empty_gazex_config_means_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GAZEX_CONFIG", "")
    assert main(["db", "status"]) == 1
    assert "sqlite:///var/gazex.db" in capsys.readouterr().out


def test_a_missing_gazex_config_file_is_an_operator_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAZEX_CONFIG", str(tmp_path / "nowhere.yaml"))
    assert main(["health"]) == 2
    assert "nowhere.yaml" in capsys.readouterr().err


ARCHIVE_JSON = '{"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104}}'


def test_gazex_destinations_as_json_sets_the_destinations_the_docs_describe() -> None:
    from gateway.config import load_settings

    settings = load_settings(environ={"GAZEX_DESTINATIONS": ARCHIVE_JSON})
    assert list(settings.destinations) == ["archive"]
    archive = settings.destinations["archive"]
    assert archive.type == "dicom" and (archive.ae_title, archive.port) == ("ARCHIVE", 104)
    # a whole section as JSON, with a key-by-key variable over it; an empty mapping means none
    both = load_settings(environ={"GAZEX_DESTINATIONS": ARCHIVE_JSON, "GAZEX_DESTINATIONS__ARCHIVE__PORT": "105"})
    assert both.destinations["archive"].port == 105
    assert load_settings(environ={"GAZEX_DICOM": '{"port": 2104}'}).dicom.port == 2104
    assert load_settings(environ={"GAZEX_DESTINATIONS": "{}"}).destinations == {}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "GAZEX_DESTINATIONS is set but empty, so it sets nothing"),
        ("archive", "GAZEX_DESTINATIONS = 'archive' is not JSON"),
        ("null", "GAZEX_DESTINATIONS = 'null' is a JSON null, not a mapping, so it sets nothing"),
        ('["archive"]', "is a JSON list, not a mapping"),
    ],
)
def test_a_gazex_section_variable_that_cannot_be_applied_is_an_error_that_shows_the_format(
    value: str, problem: str
) -> None:
    from gateway.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"GAZEX_DESTINATIONS": value})
    message = str(caught.value)
    assert problem in message
    assert 'GAZEX_DESTINATIONS=\'{"archive": {"ae_title"' in message  # what to write instead
    assert "GAZEX_DESTINATIONS__ARCHIVE__HOST=" in message


def test_a_gazex_section_variable_names_itself_in_a_value_error_and_others_stay_ignored() -> None:
    from gateway.config import ConfigError, load_settings

    bad_port = '{"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": "x"}}'
    with pytest.raises(ConfigError, match=r"destinations\.archive\.port = 'x' \(set by environment variable "
                       r"GAZEX_DESTINATIONS\)"):  # fmt: skip
        load_settings(environ={"GAZEX_DESTINATIONS": bad_port})
    with pytest.raises(ConfigError, match=r"GAZEX_WORKER = '3' is a JSON number, not a mapping"):
        load_settings(environ={"GAZEX_WORKER": "3"})
    with pytest.raises(
        ConfigError,
        match=r"destinations\.archive\.port: required, not set \(destinations\.archive is set by environment "
        r"variable GAZEX_DESTINATIONS__ARCHIVE__HOST\)",
    ):
        load_settings(environ={"GAZEX_DESTINATIONS__ARCHIVE__HOST": "pacs.example"})
    # GAZEX_ variables that name no section are not settings (GAZEX_CONFIG, the test suite's)
    assert load_settings(environ={"GAZEX_CONFIG": "x.yaml", "GAZEX_PORT": "1"}).dicom.port == 11112
