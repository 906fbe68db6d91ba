"""The live configuration on SQLite and PostgreSQL: seed, change, refuse, follow, race, reseed."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, insert, update

from gateway.cli import main
from gateway.config import Settings, edits, load_settings
from gateway.config.edits import EditError
from gateway.config.live import (
    APPLY_ATTEMPTS,
    ConcurrentChangeError,
    ConfigRejected,
    LiveSettings,
    managed_document,
)
from gateway.db import create_database_engine, upgrade
from gateway.db.models import ConfigRevision
from gateway.events import ConfigurationChange, GatewayObserver

ARCHIVE = {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104}


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder(GatewayObserver):
    def __init__(self) -> None:
        self.changes: list[ConfigurationChange] = []

    def configuration_changed(self, change: ConfigurationChange) -> None:
        self.changes.append(change)


def base_settings(tmp_path: Path, url: str, **sections: Any) -> Settings:
    values: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "database": {"url": url},
        "destinations": {"archive": ARCHIVE},
        "routing": {"rules": [{"name": "chest", "match": {"modality": ["CR", "DX"]}, "destinations": ["archive"]}]},
    }
    values.update(sections)
    return load_settings(overrides=values, environ={})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = create_database_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def base(tmp_path: Path, url: str) -> Settings:
    return base_settings(tmp_path, url)


def add_mod1(document: dict[str, Any]) -> dict[str, Any]:
    return edits.add_caller(document, {"ae_title": "MOD1", "host": "10.0.0.7"})


def callers(settings: Settings) -> list[tuple[str, str | None]]:
    return [(caller.ae_title, caller.host) for caller in settings.dicom.allowed_callers]


def test_the_first_start_seeds_revision_1_from_the_file_and_later_starts_keep_it(
    engine: Engine, base: Settings
) -> None:
    live = LiveSettings(engine, base)
    assert live.seed() == 1
    assert LiveSettings(engine, base).seed() == 1
    [revision] = live.history()
    assert (revision.revision, revision.actor) == (1, "seed")
    assert revision.document == managed_document(base)
    assert live.current() == base


def test_processes_starting_at_once_seed_once(engine: Engine, base: Settings) -> None:
    results: list[int] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        live = LiveSettings(engine, base)
        barrier.wait()
        results.append(live.seed())

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1, 1, 1, 1]
    assert [r.actor for r in LiveSettings(engine, base).history()] == ["seed"]


def test_a_change_is_stored_applied_and_reported(engine: Engine, base: Settings) -> None:
    recorder = Recorder()
    live = LiveSettings(engine, base, observers=recorder)
    live.seed()
    change = live.apply(add_mod1, actor="alice", summary="allow MOD1", address="10.9.9.9")
    assert change.revision == 2 == live.revision
    assert ("MOD1", "10.0.0.7") in callers(live.current())
    assert live.current().destinations == base.destinations  # the rest is untouched
    assert recorder.changes == [change]
    assert (change.actor, change.summary, change.address) == ("alice", "allow MOD1", "10.9.9.9")
    assert list(change.after) == ["dicom.allowed_callers"]  # only the sections that differ
    assert {"ae_title": "MOD1", "host": "10.0.0.7"} in change.after["dicom.allowed_callers"]
    assert {"ae_title": "MOD1", "host": "10.0.0.7"} not in change.before["dicom.allowed_callers"]
    newest = live.history(limit=1)[0]
    assert (newest.revision, newest.actor, newest.summary) == (2, "alice", "allow MOD1")
    assert [r.revision for r in live.history()] == [2, 1]


def test_a_refused_change_touches_nothing(engine: Engine, base: Settings) -> None:
    recorder = Recorder()
    live = LiveSettings(engine, base, observers=recorder)
    live.seed()
    live.apply(add_mod1, actor="alice", summary="allow MOD1")
    before = (live.revision, live.current(), live.history())
    refused: list[Any] = [
        lambda doc: edits.put_destination(doc, "pacs", {"ae_title": "PACS", "host": "h", "port": 0}),
        lambda doc: edits.put_rule(doc, "bad", {"match": {"modality": {"regex": "("}}}),
        lambda doc: edits.put_rule(doc, "lost", {"match": {}, "destinations": ["nowhere"]}),
        lambda doc: {**doc, "storage": {"data_dir": "/"}},
    ]
    for edit in refused:
        with pytest.raises(ConfigRejected):
            live.apply(edit, actor="mallory", summary="bad")
    with pytest.raises(EditError) as caught:
        live.apply(lambda doc: edits.delete_destination(doc, "archive"), actor="mallory", summary="bad")
    assert caught.value.kind == "conflict"
    assert (live.revision, live.current(), live.history()) == before
    assert len(recorder.changes) == 1


def test_a_change_that_changes_nothing_stores_nothing(engine: Engine, base: Settings) -> None:
    recorder = Recorder()
    live = LiveSettings(engine, base, observers=recorder)
    live.seed()
    change = live.apply(lambda doc: edits.set_flags(doc, reject_unknown_callers=True), actor="bob", summary="same")
    assert change.revision == 1 and change.before == change.after == {}
    assert recorder.changes == [] and len(live.history()) == 1


def test_another_process_sees_a_change_after_refresh_seconds(engine: Engine, base: Settings) -> None:
    ticks = Ticks()
    reader = LiveSettings(engine, base, refresh_seconds=1.0, monotonic=ticks)
    reader.seed()
    writer = LiveSettings(engine, base)
    writer.seed()
    writer.apply(add_mod1, actor="alice", summary="allow MOD1")
    assert ("MOD1", "10.0.0.7") not in callers(reader.current())  # cached
    ticks.now += 1.0
    assert ("MOD1", "10.0.0.7") in callers(reader.current())
    assert reader.revision == 2


def test_changes_from_two_processes_are_both_kept(engine: Engine, base: Settings) -> None:
    first, second = LiveSettings(engine, base), LiveSettings(engine, base)
    first.seed()
    second.seed()
    first.apply(add_mod1, actor="alice", summary="allow MOD1")
    # second's cache is stale, but apply edits the newest stored document
    second.apply(lambda doc: edits.set_ae_titles(doc, ["GAZEX", "GAZEX2"]), actor="bob", summary="second title")
    current = second.current()
    assert ("MOD1", "10.0.0.7") in callers(current) and current.dicom.ae_titles == ["GAZEX", "GAZEX2"]


def test_a_revision_stored_between_read_and_write_is_detected_and_the_edit_retried(
    engine: Engine, base: Settings
) -> None:
    ours, theirs = LiveSettings(engine, base), LiveSettings(engine, base)
    ours.seed()
    calls: list[int] = []

    def racing_edit(document: dict[str, Any]) -> dict[str, Any]:
        calls.append(len(document["dicom"]["allowed_callers"]))
        if len(calls) == 1:  # another process stores revision 2 while we edit revision 1
            theirs.apply(add_mod1, actor="alice", summary="allow MOD1")
        return edits.add_caller(document, {"ae_title": "MOD2", "host": "10.0.0.8"})

    change = ours.apply(racing_edit, actor="bob", summary="allow MOD2")
    assert change.revision == 3
    assert calls == [2, 3]  # the second try edited the newer document
    assert {("MOD1", "10.0.0.7"), ("MOD2", "10.0.0.8")} <= set(callers(ours.current()))


def test_a_change_that_always_loses_the_race_is_refused_and_stores_nothing(engine: Engine, base: Settings) -> None:
    ours, theirs = LiveSettings(engine, base), LiveSettings(engine, base)
    ours.seed()
    titles = iter(f"OTHER{n}" for n in range(100))

    def always_overtaken(document: dict[str, Any]) -> dict[str, Any]:
        theirs.apply(lambda doc: edits.set_ae_titles(doc, [next(titles)]), actor="alice", summary="title")
        return edits.add_caller(document, {"ae_title": "MOD2", "host": "10.0.0.8"})

    with pytest.raises(ConcurrentChangeError) as caught:
        ours.apply(always_overtaken, actor="bob", summary="allow MOD2")
    assert caught.value.kind == "conflict" and "try again" in caught.value.message
    assert [r.actor for r in ours.history()] == ["alice"] * APPLY_ATTEMPTS + ["seed"]
    assert ("MOD2", "10.0.0.8") not in callers(ours.current())


def test_a_file_that_differs_is_named_at_start_and_can_be_taken_with_reseed(
    engine: Engine, base: Settings, tmp_path: Path, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    live = LiveSettings(engine, base)
    live.seed()
    live.apply(add_mod1, actor="alice", summary="allow MOD1")
    edited_file = base_settings(tmp_path, url, destinations={"archive": {**ARCHIVE, "port": 4104}})
    restarted = LiveSettings(engine, edited_file)
    with caplog.at_level(logging.WARNING, logger="gateway.config.live"):
        assert restarted.seed() == 2
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "dicom.allowed_callers, destinations" in warning
    assert "revision 2 (by alice" in warning and "gazex config reseed" in warning
    assert "4104" not in warning and "MOD1" not in warning  # sections, not values
    assert restarted.current().destinations["archive"].port == 104  # the database wins
    change = restarted.reseed_from(edited_file)
    assert (change.revision, change.actor) == (3, "file")
    assert restarted.current().destinations["archive"].port == 4104
    assert ("MOD1", "10.0.0.7") not in callers(restarted.current())


def test_a_stored_revision_that_no_longer_validates(
    engine: Engine, base: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    running = LiveSettings(engine, base, monotonic=ticks)
    running.seed()
    running.apply(add_mod1, actor="alice", summary="allow MOD1")
    broken = running.history(limit=1)[0].document
    broken["destinations"]["archive"]["port"] = 0
    with engine.begin() as connection:  # e.g. written by another gazex version, or by hand
        connection.execute(
            insert(ConfigRevision).values(
                id=3, created_at=running.history(1)[0].created_at, actor="hand", summary="x", document="not JSON"
            )
        )
    ticks.now += 5
    with caplog.at_level(logging.ERROR, logger="gateway.config.live"):
        current = running.current()
    assert ("MOD1", "10.0.0.7") in callers(current) and running.revision == 2  # the running process keeps it
    assert any("cannot be used, keeping revision 2" in r.getMessage() for r in caplog.records)
    with engine.begin() as connection:
        connection.execute(update(ConfigRevision).where(ConfigRevision.id == 3).values(document=json.dumps(broken)))
    with pytest.raises(ConfigRejected) as caught:
        LiveSettings(engine, base).seed()
    assert "revision 3, by hand" in str(caught.value) and "gazex config reseed" in str(caught.value)
    assert "destinations.archive.port" in str(caught.value)


# -- the commands ------------------------------------------------------------------------------


def write_config(tmp_path: Path, url: str, **sections: Any) -> Path:
    path = tmp_path / "gazex.yaml"
    values: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "database": {"url": url},
        "destinations": {"archive": ARCHIVE},
        "routing": {"rules": [{"name": "chest", "match": {"modality": ["CR", "DX"]}, "destinations": ["archive"]}]},
    }
    values.update(sections)
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def test_config_show_history_and_reseed(
    engine: Engine, tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, url)
    assert main(["config", "show", "--config", str(config)]) == 0
    assert "no live revision yet" in capsys.readouterr().out
    assert main(["config", "reseed", "--config", str(config)]) == 0
    assert "stored revision 1" in capsys.readouterr().out
    live = LiveSettings(engine, load_settings(config, environ={}))
    live.apply(add_mod1, actor="alice", summary="allow MOD1")
    assert main(["config", "show", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "revision 2, by alice" in out and "differs from the configuration file in: dicom.allowed_callers" in out
    shown = yaml.safe_load(out)
    assert {"ae_title": "MOD1", "host": "10.0.0.7"} in shown["dicom"]["allowed_callers"]
    assert main(["config", "history", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "allow MOD1" in out and "seed" in out
    assert main(["config", "reseed", "--config", str(config)]) == 0
    assert "stored revision 3 from the configuration file: dicom.allowed_callers" in capsys.readouterr().out
    assert ("MOD1", "10.0.0.7") not in callers(LiveSettings(engine, load_settings(config, environ={})).current())
    assert main(["config", "reseed", "--config", str(config)]) == 0
    assert "already has the file's values" in capsys.readouterr().out
    bad = write_config(tmp_path, url, destinations={"archive": {**ARCHIVE, "port": 99999}})
    assert main(["config", "reseed", "--config", str(bad)]) == 2  # the file itself does not load


def test_rules_test_uses_the_live_rules(
    engine: Engine, tmp_path: Path, url: str, chest_cr_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, url)
    assert main(["rules", "test", "--config", str(config), str(chest_cr_path)]) == 0
    assert "routing rules of the configuration file (no live revision yet)" in capsys.readouterr().out
    live = LiveSettings(engine, load_settings(config, environ={}))
    live.seed()
    live.apply(
        lambda doc: edits.put_rule(doc, "chest", {"match": {"modality": ["MR"]}}), actor="alice", summary="MR only"
    )
    assert main(["rules", "test", "--config", str(config), str(chest_cr_path)]) == 1  # the live rule takes no CR
    out = capsys.readouterr().out
    assert "routing rules of the live configuration, revision 2" in out
