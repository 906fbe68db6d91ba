"""The operators' commands on a real database: studies, jobs, deliveries (retry), reprocess, rules, worker."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gateway.cli import main
from gateway.config import load_settings
from gateway.pipeline.completer import Completer
from gateway.pipeline.model import ModelUnavailable, check_demo_allowed, load_model
from inference.checkpoint import BUILTIN_ROOT
from tests.gateway.pipeline.support import Harness, make_image
from tests.gateway.pipeline.test_delivery import deliverer, prepare


def config_file(harness: Harness, tmp_path: Path) -> str:
    path = tmp_path / "gazex.yaml"
    values = {
        "storage": {"data_dir": str(harness.settings.storage.data_dir)},
        "model": {"path": "fake"},
        "destinations": {"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104}},
    }
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


@pytest.fixture
def populated(harness: Harness, template: Dataset) -> Harness:
    """A delivered study, a study whose delivery is dead, a not-routed study and one still receiving."""
    prepare(harness, template)
    deliverer(harness).run_once()
    prepare(harness, template)
    harness.destination().reachable = False
    for _ in range(3):
        deliverer(harness).run_once()
        harness.clock.advance(1000)
    harness.receive(make_image(template, generate_uid(), Modality="CT"))
    harness.clock.advance(10)
    Completer(harness.engine, harness.settings, harness.clock).check()
    harness.receive(make_image(template, generate_uid()))
    return harness


def test_studies_jobs_and_deliveries_print_tables(
    populated: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(populated, tmp_path)
    assert main(["studies", "--config", config, "--wide"]) == 0
    out = capsys.readouterr().out
    for state in ("delivered", "delivery dead", "not routed", "receiving"):
        assert state in out
    assert "modality 'CT' is not one of [CR, DX]" in out
    assert main(["jobs", "--config", config]) == 0
    out = capsys.readouterr().out
    assert out.count(" done ") == 2 and "gazex-fake 0 (fake)" in out
    assert main(["deliveries", "--config", config, "--status", "dead", "--wide"]) == 0
    out = capsys.readouterr().out
    assert " dead " in out and "0/3" in out and "cannot connect" in out


def test_deliveries_retry_brings_dead_ones_back(
    populated: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(populated, tmp_path)
    assert main(["deliveries", "retry", "1", "--config", config]) == 2
    assert "delivery 1 was delivered already" in capsys.readouterr().err
    assert main(["deliveries", "retry", "99", "--config", config]) == 2
    assert "there is no delivery 99" in capsys.readouterr().err
    assert main(["deliveries", "retry", "2", "--config", config]) == 0
    assert "delivery 2 to archive is due again (0/3 already acknowledged)" in capsys.readouterr().out
    assert populated.rows("SELECT status, attempts FROM deliveries WHERE id = 2")[0] == ("pending", 0)
    assert main(["deliveries", "retry", "--dead", "--config", config]) == 0
    assert "0 dead delivery(ies) due again" in capsys.readouterr().out


def test_reprocess_queues_a_new_job(populated: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_file(populated, tmp_path)
    study = populated.rows("SELECT study_instance_uid FROM jobs WHERE id = 1")[0].study_instance_uid
    assert main(["reprocess", study, "--config", config]) == 0
    assert "queued job 3" in capsys.readouterr().out
    assert main(["reprocess", "1.2.3.4", "--config", config]) == 2
    assert "no study 1.2.3.4 was received" in capsys.readouterr().err
    ct = populated.rows(
        "SELECT s.study_instance_uid FROM studies s JOIN study_states t ON t.study_pk = s.id "
        "WHERE t.routing = 'not_routed'"
    )[0].study_instance_uid
    assert main(["reprocess", ct, "--config", config]) == 2
    assert "was not queued: not routed" in capsys.readouterr().err


def test_rules_test_shows_which_rule_takes_a_file_and_why(
    chest_cr_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], template: Dataset
) -> None:
    assert main(["rules", "test", str(chest_cr_path)]) == 0
    out = capsys.readouterr().out
    assert "body_part          CHEST" in out
    assert "    ✓ modality 'CR' is one of [CR, DX]" in out
    verdict = "result: rule chest-radiograph routes this instance's study; this instance is analysed"
    assert out.rstrip().endswith(verdict)
    ct = make_image(template, Modality="CT")
    path = tmp_path / "ct.dcm"
    ct.save_as(path, enforce_file_format=True)
    assert main(["rules", "test", str(path), "--calling-ae", "CT1"]) == 1
    out = capsys.readouterr().out
    assert "calling_ae         CT1" in out and "    ✗ modality 'CT' is not one of [CR, DX]" in out
    assert main(["rules", "test", str(tmp_path / "missing.dcm")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_worker_needs_postgresql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gazex.yaml"
    path.write_text(f"storage:\n  data_dir: {tmp_path}\nmodel:\n  path: fake\n", encoding="utf-8")
    assert main(["worker", "--config", str(path)]) == 2
    assert "gazex worker needs PostgreSQL" in capsys.readouterr().err


def test_commands_refuse_a_database_that_is_not_migrated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gazex.yaml"
    path.write_text(f"storage:\n  data_dir: {tmp_path}\n", encoding="utf-8")
    assert main(["jobs", "--config", str(path)]) == 2
    assert "run `gazex db upgrade`" in capsys.readouterr().err


def test_serve_and_worker_refuse_the_demo_model_unless_allowed_and_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    errors: dict[str, str] = {}
    path = tmp_path / "gazex.yaml"  # the defaults: model.path is the bundled demo model
    with socket.create_server(("127.0.0.1", 0)) as taken:  # so that a serve that does not refuse cannot listen
        port = taken.getsockname()[1]
        path.write_text(
            f"storage:\n  data_dir: {tmp_path / 'data'}\ndicom:\n  host: 127.0.0.1\n  port: {port}\n", encoding="utf-8"
        )
        for command in ("serve", "worker"):
            assert main([command, "--config", str(path)]) == 2
            errors[command] = capsys.readouterr().err
    for err in errors.values():
        assert "model.path 'builtin:gazex-demo' is a demo model" in err, err
        assert "not for clinical use" in err
        assert "Set model.path to your GazeX checkpoint" in err
        assert "set model.allow_demo: true (GAZEX_MODEL__ALLOW_DEMO=true)" in err
    assert not (tmp_path / "data").exists()  # refused before anything was opened
    # the worker's own guard, for a checkpoint swapped after start-up or gazex worker
    with pytest.raises(ModelUnavailable, match="is a demo model"):
        load_model(load_settings(environ={}).model)
    allowed = load_settings(environ={"GAZEX_MODEL__ALLOW_DEMO": "1"}).model
    assert allowed.allow_demo
    check_demo_allowed(allowed)  # no refusal: serve goes on


def test_a_real_checkpoint_needs_no_switch(tmp_path: Path) -> None:
    checkpoint = tmp_path / "gazex-site"
    checkpoint.mkdir()
    document = json.loads((BUILTIN_ROOT / "gazex-demo" / "gazex.json").read_text())
    document.update(name="gazex-site", demo=False)
    (checkpoint / "gazex.json").write_text(json.dumps(document))
    check_demo_allowed(load_settings(overrides={"model": {"path": str(checkpoint)}}, environ={}).model)
    # a checkpoint that cannot be read is left to the loader, which says what is wrong with it
    check_demo_allowed(load_settings(overrides={"model": {"path": str(tmp_path / "none")}}, environ={}).model)
