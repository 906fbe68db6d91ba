"""The trainer on a few tiny phantoms: a loadable checkpoint, resume, LoRA, plain Qwen2-VL bases, errors."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from inference import load_engine
from inference.config import GenerationSettings, ImageSettings, Prompts
from inference.demo import PhantomConfig, generate_phantom, write_phantom_dataset
from inference.demo.dicom import phantom_dataset
from inference.geometry import NormalizedFrame
from inference.testing import TINY_SHAPE
from inference.training import (
    ConversionSettings,
    LoraSettings,
    TrainingError,
    TrainingSettings,
    convert_reflacx,
    train,
)
from inference.training.trainer import DataCursor, _same_fingerprint, choose_rows, learning_rate_factor

PROMPTS = Prompts(examine="Describe this chest X-ray.", attention="Locate '{sentence}'")
SMALL = PhantomConfig(rows=(500, 560))


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records of three small phantoms (seed 3), normalized:100 coordinates, short prompts."""
    root = tmp_path_factory.mktemp("training-data")
    write_phantom_dataset(root / "phantoms", seed=3, count=3, formats=("reflacx",), config=SMALL, image_max_side=128)
    path = root / "records" / "records.json"
    convert_reflacx(
        root / "phantoms" / "reflacx", path, ConversionSettings(frame=NormalizedFrame(100), prompts=PROMPTS)
    )
    return path


def _settings(records: Path, out: Path, **changes: object) -> TrainingSettings:
    settings = TrainingSettings(
        records=records,
        out=out / "model",
        work_dir=out / "work",
        shape=TINY_SHAPE,
        vocab_size=512,
        image=ImageSettings(56 * 56, 112 * 112),
        steps=4,
        warmup_steps=1,
        attention_rows=2,
        save_every=2,
        log_every=2,
        threads=1,
        seed=5,
        name="gazex-test",
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


def test_the_schedule_and_the_data_order_are_functions_of_the_settings(records: Path, tmp_path: Path) -> None:
    settings = _settings(records, tmp_path, steps=100, warmup_steps=10, min_learning_rate_ratio=0.1)
    factors = [learning_rate_factor(step, settings) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[99] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))

    first, second = DataCursor(seed=1, images=5), DataCursor(seed=1, images=5)
    visits = [first.next()[0] for _ in range(10)]
    assert sorted(visits[:5]) == list(range(5)) and sorted(visits[5:]) == list(range(5))
    assert [second.next()[0] for _ in range(10)] == visits
    resumed = DataCursor(seed=1, images=5, epoch=1, position=2)
    assert [resumed.next()[0] for _ in range(3)] == visits[7:]


def test_choose_rows_keeps_the_examine_record_and_draws_attention_records(records: Path) -> None:
    from inference.training import read_records

    loaded = read_records(records, PROMPTS)
    image = [r for r in loaded if r.image == loaded[0].image]
    chosen = choose_rows(image, 2, np.random.default_rng(0))
    assert [r.task for r in chosen] == ["examine", "attention", "attention"]
    assert choose_rows(image, None, np.random.default_rng(0)) == image


def test_training_from_scratch_writes_a_checkpoint_the_runtime_loads(records: Path, tmp_path: Path) -> None:
    settings = _settings(records, tmp_path)
    metadata = train(settings, command=["gazex", "model", "train", "..."])
    out = settings.out
    document = json.loads((out / "gazex.json").read_text())
    assert document["name"] == "gazex-test"
    assert document["coordinates"] == {"kind": "normalized", "scale": 100}
    assert document["prompts"] == {"examine": PROMPTS.examine, "attention": PROMPTS.attention}
    assert document["metadata"] == json.loads(json.dumps(metadata))
    assert metadata["seed"] == 5 and metadata["command"] == ["gazex", "model", "train", "..."]
    assert metadata["data"]["phantoms"]["seed"] == 3 and metadata["data"]["images"] == 3
    assert metadata["metrics"]["steps"] == 4 and len(metadata["metrics"]["history"]) == 2
    assert metadata["start"] == {"base": None, "shape": asdict(TINY_SHAPE)}
    assert set(metadata["trained_labels"]) <= {
        "nodule",
        "mass",
        "pleural_effusion",
        "cardiomegaly",
        "pneumothorax",
        "consolidation",
        "endotracheal_tube",
        "central_venous_catheter",
        "no_finding",
    }
    assert (settings.work_dir / "state.pt").is_file()
    assert not any(p.name.startswith("state") for p in out.iterdir())  # the training state stays out of it
    engine = load_engine(out, device="cpu")
    phantom = generate_phantom(9, 0, SMALL)
    analysis = engine.analyze([phantom_dataset(phantom)])
    assert analysis.model.name == "gazex-test" and analysis.images[0].rows == phantom.rows


def test_generation_limits_that_would_cut_off_training_answers_are_warned_about(
    records: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(records, tmp_path, steps=1, generation=GenerationSettings(8, 8))
    with caplog.at_level(logging.WARNING, logger="inference.training.trainer"):
        metadata = train(settings)
    longest = metadata["data"]["longest_answer_tokens"]
    assert longest["examine"] > 8 and longest["attention"] > 8
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m.split(":")[0] for m in warned] == ["--max-new-tokens-examine 8", "--max-new-tokens-attention 8"]
    assert f"at least {longest['attention']} keeps them whole" in warned[1]
    caplog.clear()
    roomy = GenerationSettings(longest["examine"], longest["attention"])
    with caplog.at_level(logging.WARNING, logger="inference.training.trainer"):
        train(_settings(records, tmp_path / "roomy", steps=1, generation=roomy))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(records: Path, tmp_path: Path) -> None:
    straight = _settings(records, tmp_path / "straight")
    train(straight)
    interrupted = _settings(records, tmp_path / "interrupted", steps=4)
    # run the first two steps only: the state is saved every 2 steps; then resume to the end
    from inference.training.trainer import TrainingRun, _check_state

    run = TrainingRun(interrupted, _check_state(interrupted, resume=False))
    run.run_step()
    run.run_step()
    assert (interrupted.work_dir / "state.pt").is_file()
    del run
    with pytest.raises(TrainingError, match="--resume"):
        train(interrupted)
    train(interrupted, resume=True)
    a = load_file(str(straight.out / "model.safetensors"))
    b = load_file(str(interrupted.out / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    with pytest.raises(TrainingError, match="settings differ"):
        train(replace(interrupted, learning_rate=0.5), resume=True)


def test_a_run_saved_before_a_setting_existed_resumes_when_that_setting_is_at_its_default(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path / "records.json", tmp_path)
    current = settings.fingerprint()
    # a state saved by a version that knew neither the positive nor the observation weight
    saved = {key: value for key, value in current.items() if key not in ("positive_weight", "observation_weight")}
    assert _same_fingerprint(saved, current)
    assert _same_fingerprint(current, current)
    # ... but not when the new setting is given a value the old run cannot have had
    assert not _same_fingerprint(saved, replace(settings, positive_weight=3.0).fingerprint())
    assert not _same_fingerprint(saved, replace(settings, observation_weight=4.0).fingerprint())
    # a changed setting, or one the saved run had and the current version does not know, still differs
    assert not _same_fingerprint(current, replace(settings, learning_rate=0.5).fingerprint())
    assert not _same_fingerprint({**current, "retired_option": 1}, current)
    # tuples are compared as the JSON lists the state holds
    gaze_less = {key: value for key, value in current.items() if key != "gaze_tasks"}
    assert _same_fingerprint(gaze_less, current)
    assert not _same_fingerprint(gaze_less, replace(settings, gaze_tasks=("examine", "attention")).fingerprint())


def test_fine_tuning_a_plain_qwen2_vl_checkpoint_with_lora(
    records: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft (pip install 'gazex-gateway[train]')")
    base = tmp_path / "plain-qwen2-vl"
    shutil.copytree(tiny_checkpoint, base)
    (base / "gazex.json").unlink()  # a Hugging Face checkpoint has none
    settings = _settings(
        records,
        tmp_path,
        base=str(base),
        shape=None,
        steps=2,
        lora=LoraSettings(rank=4, alpha=8.0, dropout=0.0),
        freeze_vision=True,
    )
    train(settings)
    document = json.loads((settings.out / "gazex.json").read_text())
    assert document["coordinates"] == {"kind": "normalized", "scale": 100}
    merged = load_file(str(settings.out / "model.safetensors"))
    original = load_file(str(tiny_checkpoint / "model.safetensors"))
    assert merged.keys() == original.keys()  # adapters merged: a plain Qwen2-VL layout
    changed = [k for k in merged if not np.array_equal(merged[k], original[k])]
    assert changed and all(k.startswith("model.layers.") and "self_attn" in k for k in changed)  # LLM attention only
    assert load_engine(settings.out, device="cpu").identity.name == "gazex-test"


def test_a_fine_tune_records_which_weights_it_started_from(
    records: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """builtin:NAME or a directory names whatever is there at the time; the digest, name and version do not change."""
    from inference.checkpoint import open_checkpoint

    base = open_checkpoint(tiny_checkpoint)
    settings = _settings(records, tmp_path, base=str(tiny_checkpoint), shape=None, steps=2, freeze_vision=True)
    start = train(settings)["start"]
    assert start == {
        "base": str(tiny_checkpoint),
        "base_weights_sha256": base.weights_sha256,
        "base_name": base.gazex.name,
        "base_version": base.gazex.version,
        "shape": None,
    }
    assert open_checkpoint(settings.out).weights_sha256 != base.weights_sha256


def test_lora_without_peft_says_how_to_get_it(
    records: Path, tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)
    settings = _settings(records, tmp_path, base=str(tiny_checkpoint), shape=None, lora=LoraSettings())
    with pytest.raises(TrainingError, match=r"peft.*gazex-gateway\[train\]"):
        train(settings)


def test_records_in_another_frame_than_the_base_declares_are_refused(records: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="contradicts"):
        train(_settings(records, tmp_path, coordinates=NormalizedFrame(1000)))


def test_the_vision_phase_has_its_own_warm_up_and_decay(records: Path, tmp_path: Path) -> None:
    settings = _settings(records, tmp_path, steps=100, vision_steps=40, warmup_steps=10, min_learning_rate_ratio=0.1)
    factors = [learning_rate_factor(step, settings) for step in range(100)]
    assert factors[0] == pytest.approx(0.25) and factors[3] == pytest.approx(1.0)  # warm-up of 40 // 10 steps
    assert factors[39] == pytest.approx(0.1, abs=1e-2)
    assert factors[40] == pytest.approx(0.1) and factors[49] == pytest.approx(1.0)  # the language phase restarts
    assert factors[99] == pytest.approx(0.1, abs=1e-3)
    with pytest.raises(ValueError, match="vision_steps"):
        _settings(records, tmp_path, steps=4, vision_steps=4)
    with pytest.raises(ValueError, match="freeze_vision"):
        _settings(records, tmp_path, vision_steps=2, freeze_vision=True)


def test_grounding_trains_the_vision_tower_first_and_resumes_exactly(records: Path, tmp_path: Path) -> None:
    from inference.training.trainer import TrainingRun

    grounded = {"steps": 4, "vision_steps": 2, "vision_batch": 2, "grounding_weight": 0.5, "presence_weight": 1.0}
    run = TrainingRun(_settings(records, tmp_path / "steps", **grounded), None)
    language = {n: p.detach().clone() for n, p in run.model.named_parameters() if "visual" not in n}
    visual = {n: p.detach().clone() for n, p in run.model.named_parameters() if "visual" in n}
    first = run.run_step()
    assert first.phase == "vision" and np.isfinite(first.grounding_loss) and np.isnan(first.examine_loss)
    assert first.images == 2
    after = dict(run.model.named_parameters())
    assert all(torch_equal(after[n], v) for n, v in language.items())  # the vision phase leaves the LM alone
    assert not all(torch_equal(after[n], v) for n, v in visual.items())
    run.run_step()
    third = run.run_step()
    assert third.phase == "language" and np.isfinite(third.examine_loss + third.grounding_loss + third.presence_loss)
    assert third.images == 5
    del run
    settings = _settings(records, tmp_path / "straight", **grounded)
    metadata = train(settings)
    assert metadata["grounding"]["labels"] == sorted(metadata["grounding"]["labels"])
    assert metadata["grounding"]["heads"] == ["grounding", "presence"]
    # strict JSON: the vision phase's history has no language losses, written as null, not NaN
    text = (settings.out / "gazex.json").read_text()
    history = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in gazex.json"))["metadata"]
    assert history["metrics"]["history"][0]["examine_loss"] is None
    assert metadata["metrics"]["images_seen"] == 6
    # the head is training-only: the checkpoint holds the Qwen2-VL weights alone
    weights = load_file(str(settings.out / "model.safetensors"))
    assert not any("grounding" in name for name in weights)

    _assert_an_interrupted_run_resumes_to(settings, _settings(records, tmp_path / "interrupted", **grounded))


def test_the_position_head_reads_each_image_tokens_place_and_resumes_exactly(records: Path, tmp_path: Path) -> None:
    import torch

    from inference.training.grounding import grid_positions
    from inference.training.trainer import TrainingRun

    positioned = {"steps": 4, "position_weight": 1.0, "position_layer": 1}
    run = TrainingRun(_settings(records, tmp_path / "steps", **positioned), None)
    assert run.position_head is not None and run.grounding_head is None and run.presence_head is None
    batch, pixel_values, grid, _ = run.data.micro_batch(0, np.random.default_rng(0))
    hidden = run.wrapper.loss(batch, pixel_values, grid, image_layer=1)[4]
    image = batch.plan.image_slice
    assert hidden.shape[0] == image.stop - image.start
    _, rows, columns = (int(v) for v in grid[0])
    targets = torch.from_numpy(grid_positions(rows // 2, columns // 2))
    expected = ((run.position_head(hidden) - targets) ** 2).mean()
    torch.testing.assert_close(run.position_loss(hidden, grid), expected)
    report = run.run_step()
    assert np.isfinite(report.position_loss) and np.isnan(report.grounding_loss)
    del run
    with pytest.raises(TrainingError, match="--position-layer 99"):
        TrainingRun(_settings(records, tmp_path / "deep", steps=4, position_weight=1.0, position_layer=99), None)

    settings = _settings(records, tmp_path / "straight", **positioned)
    metadata = train(settings)
    assert metadata["grounding"]["heads"] == ["position"]
    assert all(entry["position_loss"] is not None for entry in metadata["metrics"]["history"])
    weights = load_file(str(settings.out / "model.safetensors"))
    assert not any("position_head" in name for name in weights)  # training-only
    _assert_an_interrupted_run_resumes_to(settings, _settings(records, tmp_path / "interrupted", **positioned))


def test_with_sides_the_grounding_and_presence_losses_weigh_each_label_as_a_kind_unsplit(
    records: Path, tmp_path: Path
) -> None:
    import torch

    from inference.training.grounding import label_kind
    from inference.training.trainer import TrainingRun

    # the fixture's findings are all on the right: add each right-sided statement's mirror image
    entries = json.loads(records.read_text())
    for entry in list(entries):
        question = entry["messages"][0]["content"]
        if question.startswith("<image>Locate") and " right " in question:
            mirrored = [{**m, "content": m["content"].replace(" right ", " left ")} for m in entry["messages"]]
            entries.append({**entry, "messages": mirrored})
    both = records.with_name("both-sides.json")  # beside the records: their image paths are relative
    both.write_text(json.dumps(entries))
    both.with_name("both-sides.meta.json").write_bytes(records.with_name("records.meta.json").read_bytes())
    sided = {"vision_steps": 1, "vision_batch": 2, "grounding_weight": 1.0, "presence_weight": 1.0}
    run = TrainingRun(_settings(both, tmp_path / "sides", grounding_sides=True, **sided), None)
    labels = run.data.grounding
    kinds = {label_kind(label) for label in labels}
    assert len(labels) > len(kinds)
    assert run.data.kind_scale == len(labels) / len(kinds)
    image = run.wrapper.image_tokens(*run.data.vision_batch([0]))
    targets = torch.from_numpy(run.data.grounding_targets(0))
    mean = torch.nn.functional.binary_cross_entropy_with_logits(run.grounding_head(image.float()), targets)
    torch.testing.assert_close(run.grounding_loss(image, [0]), mean * len(labels) / len(kinds))
    hidden = torch.randn(3, run.presence_head.in_features)
    present = targets.amax(dim=0).expand(3, -1)
    mean = torch.nn.functional.binary_cross_entropy_with_logits(run.presence_head(hidden), present)
    torch.testing.assert_close(run.presence_loss(hidden, 0), mean * len(labels) / len(kinds))
    unsplit = TrainingRun(_settings(both, tmp_path / "unsplit", **sided), None)
    assert unsplit.data.kind_scale == 1.0


def test_the_presence_head_alone_adds_no_grounding_head(records: Path, tmp_path: Path) -> None:
    from inference.training.trainer import TrainingRun

    run = TrainingRun(_settings(records, tmp_path, presence_weight=1.0), None)
    assert run.grounding_head is None and run.presence_head is not None
    report = run.run_step()
    assert np.isfinite(report.presence_loss) and np.isnan(report.grounding_loss)


def _assert_an_interrupted_run_resumes_to(straight: TrainingSettings, interrupted: TrainingSettings) -> None:
    """Two steps, stopped, then resumed: the weights are those of ``straight``'s uninterrupted run."""
    from inference.training.trainer import TrainingRun, _check_state

    run = TrainingRun(interrupted, _check_state(interrupted, resume=False))
    run.run_step()
    run.run_step()
    del run
    train(interrupted, resume=True)
    a = load_file(str(straight.out / "model.safetensors"))
    b = load_file(str(interrupted.out / "model.safetensors"))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def torch_equal(a: object, b: object) -> bool:
    import torch

    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return bool(torch.equal(a, b))


def test_gaze_supervision_reads_the_language_models_attention_and_moves_it(records: Path, tmp_path: Path) -> None:
    import torch

    from inference.training.trainer import TrainingRun

    both = ("examine", "attention")
    run = TrainingRun(
        _settings(records, tmp_path, gaze_weight=1.0, gaze_heads=2, gaze_tasks=both, learning_rate=1e-2), None
    )
    batch, pixel_values, grid, rows = run.data.micro_batch(0, np.random.default_rng(0))
    indices, maps = run.data.gaze_targets(0, rows)
    tasks = batch.target_tasks[indices]
    assert set(tasks.tolist()) == {0, 1}  # the examine answer's sentences and the attention answers
    attention = batch.target_tasks == 1
    assert set(np.flatnonzero(attention).tolist()) <= set(indices.tolist())  # every attention target
    np.testing.assert_allclose(maps.sum(axis=1), 1.0, rtol=1e-5)
    examine_only = TrainingRun(_settings(records, tmp_path / "examine", gaze_weight=1.0), None)  # the default
    same, _, _, same_rows = examine_only.data.micro_batch(0, np.random.default_rng(0))
    chosen, _ = examine_only.data.gaze_targets(0, same_rows)
    assert len(chosen) and (same.target_tasks[chosen] == 0).all()
    assert maps.shape[1] == batch.plan.image_slice.stop - batch.plan.image_slice.start

    with torch.no_grad():
        eager, _, _, weights, _ = run.wrapper.loss(batch, pixel_values, grid, attentions=True)
        run.model.model.language_model.config._attn_implementation = "sdpa"
        plain = run.wrapper.loss(batch, pixel_values, grid)
        run.wrapper.eager_text_attention()
    assert plain[3] is None and len(weights) == TINY_SHAPE.num_hidden_layers
    torch.testing.assert_close(eager, plain[0], rtol=1e-4, atol=1e-5)  # reading the weights changes nothing

    def gaze() -> float:
        with torch.no_grad():
            attentions = run.wrapper.loss(batch, pixel_values, grid, attentions=True)[3]
            return float(run.wrapper.gaze_loss(attentions, batch, (indices, maps), 2))

    before = gaze()
    report = run.run_step()
    assert np.isfinite(report.gaze_loss) and report.gaze_loss >= 0
    for _ in range(6):  # the supervision alone, on this one image
        run.optimizer.zero_grad()
        attentions = run.wrapper.loss(batch, pixel_values, grid, attentions=True)[3]
        run.wrapper.gaze_loss(attentions, batch, (indices, maps), 2).backward()
        run.optimizer.step()
    assert gaze() < before

    with pytest.raises(TrainingError, match="gaze-heads"):
        TrainingRun(_settings(records, tmp_path / "too-many", gaze_weight=1.0, gaze_heads=99), None)
    with pytest.raises(ValueError, match="gaze_heads"):
        _settings(records, tmp_path, gaze_heads=0)
    for weight in ("decision_weight", "positive_weight", "observation_weight"):
        with pytest.raises(ValueError, match=weight):
            _settings(records, tmp_path, **{weight: 0.0})
    with pytest.raises(ValueError, match="gaze_tasks"):
        _settings(records, tmp_path, gaze_tasks=("report",))
