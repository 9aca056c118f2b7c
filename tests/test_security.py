"""No artifact is ever loaded in a way that can run code: a poisoned checkpoint, prepared
inputs file or pretrained-weights file is refused with one line, and its payload never runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from grmu import GrmuError
from grmu.prepared import load_prepared
from grmu.models import build_model, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this calls ``os.system``: it touches ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poison(path: Path, marker: Path, obj_around=lambda p: p) -> None:
    """A torch.save archive whose pickle holds ``Payload`` (weights_only=False would run it)."""
    torch.save(obj_around(Payload(marker)), path)


def small_net():
    return build_model({"arch": "small_cnn", "width": 4}, 2, (3, 8, 8))


def test_payload_would_run_without_weights_only(tmp_path):
    """The fixture is live: the unsafe load does run it (so the tests below can fail)."""
    marker = tmp_path / "ran"
    poison(tmp_path / "x.pt", marker)
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "wrap",
    [lambda p: p, lambda p: {"state_dict": {"w": p}, "info": {}}, lambda p: {"state_dict": {}, "info": {"run": p}}],
)
def test_poisoned_checkpoint_is_refused(tmp_path, wrap):
    marker = tmp_path / "ran"
    poison(tmp_path / "m.pt", marker, wrap)
    with pytest.raises(GrmuError, match="cannot load checkpoint .*m.pt"):
        load_checkpoint(tmp_path / "m.pt", small_net())
    assert not marker.exists()


def test_checkpoint_round_trip_and_truncation(tmp_path):
    net = small_net()
    save_checkpoint(tmp_path / "m.pt", net, {"name": "x", "history": [{"val_acc": 1.0}], "run": {"torch": "2"}})
    other = small_net()
    assert load_checkpoint(tmp_path / "m.pt", other)["name"] == "x"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(GrmuError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "m.pt", other)


def test_checkpoint_run_info_is_plain_data(prepared_dir, tmp_path):
    """Stages store plain strings (not TorchVersion objects), so weights_only can read them."""
    from grmu.runtime import run_info

    info = run_info(3)
    assert type(info["torch"]) is str
    save_checkpoint(tmp_path / "m.pt", small_net(), {"run": info})
    assert load_checkpoint(tmp_path / "m.pt", small_net())["run"] == info


def test_poisoned_prepared_inputs_are_refused(prepared_dir, tmp_path):
    bad = tmp_path / "prepared"
    shutil.copytree(prepared_dir, bad)
    marker = tmp_path / "ran"
    poison(bad / "inputs.pt", marker)
    with pytest.raises(GrmuError, match="cannot read the prepared dataset"):
        load_prepared(bad)
    assert not marker.exists()


def test_poisoned_pretrained_weights_are_refused(tmp_path):
    marker = tmp_path / "ran"
    poison(tmp_path / "resnet18.pth", marker, lambda p: {"conv1.weight": p})
    with pytest.raises(GrmuError, match="cannot read .*resnet18.pth"):
        build_model({"arch": "resnet18", "width": 16, "pretrained": str(tmp_path / "resnet18.pth")}, 2, (3, 32, 32))
    assert not marker.exists()


def test_a_stage_refuses_a_poisoned_checkpoint_in_one_line(prepared_dir, tmp_path):
    """Through the stage script, as `dvc repro` runs it: one line, exit 2, no output, no payload."""
    from grmu.stages.forget_set import run as forget_set
    from tests.conftest import small_params

    forget_set(small_params(), prepared_dir, 0.5, 0, tmp_path / "forget/0.5.json")
    marker = tmp_path / "ran"
    poison(tmp_path / "m.pt", marker, lambda p: {"state_dict": {}, "info": p})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params(ratios=[0.5])))
    out = tmp_path / "u"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "stages" / "unlearn.py"),
            "--params",
            str(tmp_path / "params.yaml"),
            "--prepared",
            str(prepared_dir),
            "--pretrained",
            str(tmp_path / "m.pt"),
            "--seed",
            "0",
            "--forget",
            str(tmp_path / "forget"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "cannot load checkpoint" in res.stderr
    assert not out.exists() and not marker.exists()


def test_poisoned_model_outputs_are_refused(prep, tmp_path):
    """The outputs that evaluate@{model} reads are numpy archives: a pickled object in one never runs."""
    import numpy as np

    from grmu.outputs import load_outputs

    marker = tmp_path / "ran"
    payload = np.empty((len(prep.y), 2), dtype=object)
    payload[0, 0] = Payload(marker)
    np.savez(tmp_path / "m.npz", logits=payload, loss=np.zeros(len(prep.y), np.float32), info=np.array("{}"))
    np.load(tmp_path / "m.npz", allow_pickle=True)["logits"]  # the fixture is live: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(GrmuError, match="cannot read model outputs .*m.npz"):
        load_outputs(tmp_path / "m.npz", len(prep.y))
    assert not marker.exists()


def test_no_unsafe_torch_load_in_the_code():
    """Every torch.load in the project names weights_only=True."""
    import re

    for path in (
        list((ROOT / "src").rglob("*.py")) + list((ROOT / "stages").glob("*.py")) + list((ROOT / "bench").glob("*.py"))
    ):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path}: {call}"
