"""No RETRAIN variant may ever read a forget sample while it trains: RETRAIN is the gold standard
that never saw the forget set. Once its weights are final, its stage runs it on every sample
(the outputs that evaluate@{model} reads, UA among them), and only then."""

import json

import numpy as np
import pytest

import grmu.prepared
from grmu.stages import pretrain, retrain
from grmu.stages.forget_set import run as forget_set
from tests.conftest import train_reference
from tests.conftest import small_params


class RecordingInputs:
    """Wraps the inputs tensor and records every sample index read from it."""

    def __init__(self, inputs):
        self.inputs, self.seen, self.after = inputs, set(), set()
        self.trained = False  # set when the model's outputs are computed: its weights are final then

    def __getitem__(self, idx):
        (self.after if self.trained else self.seen).update(np.asarray(idx).reshape(-1).tolist())
        return self.inputs[idx]

    def __len__(self):
        return len(self.inputs)


@pytest.fixture
def recorded(prepared_dir, tmp_path, monkeypatch):
    """(forget set, train(variant) -> indices read while training)."""
    forget_set(small_params(), prepared_dir, 0.9, 0, tmp_path / "f.json")
    forget = set(json.loads((tmp_path / "f.json").read_text())["forget"])
    real_load = grmu.prepared.load_prepared
    recorders = []

    def load_recording(path):
        prep = real_load(path)
        prep.inputs = RecordingInputs(prep.inputs)
        recorders.append(prep.inputs)
        return prep

    for stage in (pretrain, retrain):
        monkeypatch.setattr(stage, "load_prepared", load_recording)
    real_save_outputs = pretrain.save_outputs

    def save_outputs(path, model, prep, *args):
        prep.inputs.trained = True
        return real_save_outputs(path, model, prep, *args)

    monkeypatch.setattr(pretrain, "save_outputs", save_outputs)  # the training body shared with RETRAIN

    def train(variant):
        train_reference(
            small_params(), prepared_dir, 0, tmp_path / "m.pt", variant=variant, forget_path=tmp_path / "f.json"
        )
        return recorders[-1]

    return forget, train


@pytest.mark.parametrize("variant", ["erm", "reweight", "gdro"])
def test_retrain_never_reads_a_forget_sample(recorded, variant):
    forget, train = recorded
    rec = train(variant)
    assert len(rec.seen) > 1000  # it did train (and validate)
    assert not rec.seen & forget
    assert forget <= rec.after  # the final model's outputs cover the forget set (its UA)


def test_the_recorder_would_catch_a_leak(recorded):
    """PRETRAIN trains on all of train, so the same check must see the forget samples there."""
    forget, train = recorded
    assert forget <= train(None).seen
