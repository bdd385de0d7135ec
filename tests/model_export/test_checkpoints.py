"""Checkpoints are untrusted input (issue 14): read with weights_only=True,
the shipped ones included, and a file carrying a pickled object is refused
before any of its code runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_export.checkpoints import CheckpointError, load_checkpoint_dict  # noqa: E402
from model_export.export import load_checkpoint  # noqa: E402
from model_export.train import rng_state, set_rng_state  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "runs").glob("r*/*.pt"))


class _RunsCode:
    """Unpickling this runs a command that leaves ``marker`` behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def crafted(tmp_path) -> tuple[Path, Path]:
    """(checkpoint, marker): a checkpoint whose "config" carries the object."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "sent_by_someone.pt"
    torch.save({"config": _RunsCode(marker), "model": {}}, path)
    return path, marker


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_the_shipped_checkpoints_load_as_weights_and_plain_data(path):
    ckpt = load_checkpoint_dict(path)
    assert isinstance(ckpt["config"], dict) and ckpt["config"]["bands"] == 4
    # The same weights as an unrestricted load of these trusted files: export
    # (deterministic given the weights) reproduces the shipped models.
    trusted = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["model"].keys() == trusted["model"].keys()
    assert all(torch.equal(ckpt["model"][k], trusted["model"][k]) for k in trusted["model"])
    assert np.array_equal(ckpt["rng"]["numpy"][1], trusted["rng"]["numpy"][1])


def test_a_checkpoint_carrying_a_pickled_object_is_refused_before_it_runs(crafted):
    path, marker = crafted
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_dict(path)
    message = str(info.value)
    print(message)
    assert message.startswith(f"The checkpoint {path} holds Python objects other than tensors "
                              "and plain data (it refers to ") and "system" in message
    assert "loading it would run code the file carries" in message
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_export_and_resume_refuse_it_with_the_sentence(crafted, tmp_path):
    path, marker = crafted
    env = dict(os.environ, PYTHONPATH=str(REPO))
    export = subprocess.run(
        [sys.executable, "-m", "model_export.export", "--checkpoint", str(path), "--out",
         str(tmp_path / "m.onnx")], capture_output=True, text=True, env=env, check=False)
    assert export.returncode == 1 and "export failed: The checkpoint" in export.stderr
    assert "holds Python objects other than tensors" in export.stderr
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(path.read_bytes())
    resume = subprocess.run(
        [sys.executable, "-m", "model_export.train", "--out", str(run), "--resume"],
        capture_output=True, text=True, env=env, check=False)
    assert resume.returncode == 2 and "error: The checkpoint" in resume.stderr, resume.stderr
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


def test_a_damaged_or_foreign_file_gets_a_sentence(tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((SHIPPED[0]).read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint_dict(truncated)
    weights_only = tmp_path / "state_dict.pt"
    torch.save({"w": torch.zeros(2)}, weights_only)
    with pytest.raises(CheckpointError, match="lacks the 'config' and 'model' entries"):
        load_checkpoint_dict(weights_only)


def test_the_random_state_is_stored_as_plain_data_and_restored(tmp_path):
    np.random.seed(7)
    path = tmp_path / "rng.pt"
    torch.save({"config": {}, "model": {}, "rng": rng_state()}, path)
    expected = np.random.random(3)
    np.random.seed(99)
    set_rng_state(load_checkpoint_dict(path)["rng"])
    assert np.array_equal(np.random.random(3), expected)
