"""Stage wiring: each stage passes the right sets, flags and settings to the library."""

import json

import numpy as np
import pytest

from grmu.inference import model_accuracy
from grmu.metrics import forget_group_accuracy
from grmu.models import load_checkpoint, model_for
from grmu.runtime import device
from grmu.prepared import load_prepared
from grmu.splits import load_forget, remaining_indices
from grmu.stages.evaluate import run as evaluate
from grmu.stages.forget_set import run as forget_set
from grmu.stages.unlearn import run as unlearn
from tests.conftest import small_params, train_reference


@pytest.fixture(scope="module")
def trained(prepared_dir, tmp_path_factory):
    """A 1-epoch PRETRAIN and a forget set of 90% of the forget group."""
    d = tmp_path_factory.mktemp("stages")
    p = small_params(train={"epochs": 1})
    forget_set(p, prepared_dir, 0.9, 0, d / "f.json")
    train_reference(p, prepared_dir, 0, d / "pre.pt")
    return p, d


def test_evaluate_measures_each_metric_on_its_own_set(prepared_dir, trained):
    p, d = trained
    result = evaluate(p, prepared_dir, d / "pre.npz", d / "f.json", "pretrain", d / "e.json")
    assert json.loads((d / "e.json").read_text()) == result
    prep = load_prepared(prepared_dir)
    model = model_for(p["model"], prep, load_weights=False)
    load_checkpoint(d / "pre.pt", model)
    fs = load_forget(d / "f.json")
    forget, remaining = fs["forget"], remaining_indices(prep, fs["forget"])
    m = result["metrics"]
    assert m["RA"] == pytest.approx(model_accuracy(model, prep, remaining))
    assert m["UA"] == pytest.approx(model_accuracy(model, prep, forget))
    assert m["TA"] == pytest.approx(model_accuracy(model, prep, prep.indices("test")))
    assert m["VA"] == pytest.approx(model_accuracy(model, prep, prep.indices("val")))
    # the fixture tells the sets apart: all of train, or train instead of test, give other numbers
    assert model_accuracy(model, prep, prep.indices("train")) != pytest.approx(m["RA"])
    from grmu.inference import predict

    test = prep.indices("test")
    pred = predict(model, prep, test).argmax(1).numpy()
    assert m["GA"] == pytest.approx(forget_group_accuracy(pred, prep.y[test], prep.a[test], fs["groups"]))
    assert result["groups"] == fs["groups"] and result["ratio"] == 0.9 and result["seed"] == 0
    # MIA_SVC reads the softmax confidence of the true class, exp(-loss), of each set
    from grmu.inference import predictions
    from grmu.metrics import EVAL_SETS, svc_mia_efficacy

    sets = dict(zip(EVAL_SETS, (remaining, forget, prep.indices("val"), test)))
    _, loss = predictions(model, prep, sets)
    conf = np.exp(-loss.astype(np.float64))
    assert m["MIA_SVC"] == svc_mia_efficacy(conf[remaining], conf[test], conf[forget])


@pytest.mark.parametrize("kind,fairness,ga", [("random", False, False), ("group", False, True)])
def test_evaluate_omits_metrics_a_dataset_without_groups_cannot_have(tmp_path, kind, fairness, ga):
    from grmu.outputs import save_outputs
    from grmu.models import new_model
    from grmu.stages.prepare import run as prepare

    p = small_params(dataset="mnist", forget={"kind": kind})
    prepare(p, tmp_path / "prep")
    forget_set(p, tmp_path / "prep", 0.1, 0, tmp_path / "f.json")
    prep = load_prepared(tmp_path / "prep")
    save_outputs(tmp_path / "m.npz", new_model(p["model"], prep, 0), prep, 512, {"name": "untrained"}, "m")
    m = evaluate(p, tmp_path / "prep", tmp_path / "m.npz", tmp_path / "f.json", "pretrain", tmp_path / "e.json")[
        "metrics"
    ]
    assert ({"EO", "DP", "EP"} <= set(m)) == fairness and ("GA" in m) == ga
    assert {"RA", "UA", "TA", "MIA", "MIA_SVC", "WG"} <= set(m)


@pytest.mark.parametrize("reweight", [False, True])
def test_unlearn_passes_reweight_settings_and_the_sets_to_the_method(prepared_dir, trained, monkeypatch, reweight):
    """The method gets the run's reweight flag, the forget set, train minus it as the remaining
    set and the resolved settings, and its model is what gets saved."""
    from grmu.methods import METHODS, register_method

    p, d = trained
    seen = {}

    @register_method("_probe", options={"knob": 3})
    def probe(ctx):
        seen.update(
            reweight=ctx.reweight,
            forget=ctx.forget_idx,
            remaining=ctx.remaining_idx,
            cfg=ctx.cfg,
            options=ctx.options,
            seed=ctx.seed,
        )
        return ctx.model

    try:
        q = small_params(method="_probe", reweight=reweight, methods={"_probe": {"knob": 7}}, unlearn={"lr": 0.5})
        info = unlearn(q, prepared_dir, d / "pre.pt", d / "f.json", 4, d / "u.pt")
    finally:
        METHODS.remove("_probe")
    prep = load_prepared(prepared_dir)
    forget = load_forget(d / "f.json")["forget"]
    assert seen["reweight"] is reweight and info["reweight"] is reweight
    assert np.array_equal(seen["forget"], forget)
    assert np.array_equal(seen["remaining"], remaining_indices(prep, forget))
    assert seen["cfg"]["lr"] == 0.5 and seen["options"] == {"knob": 7} and seen["seed"] == 4
    saved = model_for(p["model"], prep, load_weights=False)
    assert load_checkpoint(d / "u.pt", saved)["options"] == {"knob": 7}


def test_unlearn_passes_a_memorization_forget_sets_subsets_to_the_method(prepared_dir, trained, tmp_path):
    """RUM reads the high/mid/low subsets from its context: the stage must hand them over."""
    from grmu.methods import METHODS, register_method
    from grmu.splits import save_forget

    p, d = trained
    prep = load_prepared(prepared_dir)
    tr = prep.indices("train")
    subsets = {"high": tr[:3], "mid": tr[10:13], "low": tr[20:23]}
    f = tmp_path / "mix.json"
    save_forget(
        f,
        np.concatenate(list(subsets.values())),
        [],
        0.1,
        0,
        len(tr),
        kind="memorization",
        extra={"level": "mix", "score": "heldout", "subsets": subsets},
    )
    seen = {}

    @register_method("_probe_subsets")
    def probe(ctx):
        seen.update(subsets=ctx.subsets)
        return ctx.model

    try:
        unlearn(
            small_params(method="_probe_subsets", forget={"kind": "memorization", "level": "mix"}),
            prepared_dir,
            d / "pre.pt",
            f,
            0,
            tmp_path / "u.pt",
        )
    finally:
        METHODS.remove("_probe_subsets")
    assert set(seen["subsets"]) == set(subsets)
    assert all(np.array_equal(seen["subsets"][k], v) for k, v in subsets.items())


@pytest.mark.parametrize("mode", ["single", "best_of_grid"])
def test_evaluate_uses_the_configured_mia_mode(prepared_dir, trained, mode, monkeypatch):
    import grmu.stages.evaluate as stage

    p, d = trained
    seen = []
    real = stage.split_metrics

    def spy(*args, **kw):
        seen.append(args[8] if len(args) > 8 else kw.get("mia_mode"))
        return real(*args, **kw)

    monkeypatch.setattr(stage, "split_metrics", spy)
    q = {**p, "eval": {**p["eval"], "mia": mode}}
    m = evaluate(q, prepared_dir, d / "pre.npz", d / "f.json", "pretrain", d / f"e-{mode}.json")["metrics"]
    assert seen == [mode]
    if mode == "single":
        assert m["MIA_config"] == "100-gini"


def test_a_model_stage_saves_its_outputs_on_every_sample_as_an_evaluation_would_compute_them(prepared_dir, trained):
    """The outputs beside PRETRAIN's checkpoint are the checkpoint's logits and losses on every
    sample (each split in its own batches), with the checkpoint's info less its history."""
    import torch

    from grmu.inference import predictions
    from grmu.outputs import load_outputs
    from grmu.prepared import SPLITS

    p, d = trained
    prep = load_prepared(prepared_dir)
    model = model_for(p["model"], prep, load_weights=False).to(device())  # where the stage computed them
    info = load_checkpoint(d / "pre.pt", model)
    logits = np.zeros((len(prep.y), prep.n_classes), dtype=np.float32)
    pred, loss = predictions(model, prep, {s: prep.indices(s) for s in SPLITS}, 512, logits)
    out = load_outputs(d / "pre.npz", len(prep.y))
    assert np.array_equal(out["logits"], logits) and np.array_equal(out["loss"], loss)
    assert np.array_equal(out["pred"], pred) and (pred >= 0).all()
    assert "history" in info and out["info"] == {k: v for k, v in info.items() if k != "history"}
    # the losses are those of each sample's own label (a fixture with both classes tells)
    want = torch.nn.functional.cross_entropy(torch.as_tensor(logits), torch.as_tensor(prep.y), reduction="none")
    assert np.allclose(out["loss"], want.numpy(), atol=1e-6) and len(set(prep.y)) == 2
    with pytest.raises(Exception, match="do not cover the 10 prepared samples"):
        load_outputs(d / "pre.npz", 10)


def test_the_seed_stages_build_one_forget_set_and_one_model_per_ratio(prepared_dir, trained, tmp_path):
    """forget_set@seed and unlearn@seed loop over the ratios: the same files as one call each."""
    from grmu.stages import forget_set as fs_stage
    from grmu.stages import unlearn as un_stage

    p, d = trained
    q = {**p, "ratios": [0.3, 0.9]}
    fs_stage.run_seed(q, prepared_dir, 0, tmp_path / "forget")
    assert sorted(f.name for f in (tmp_path / "forget").iterdir()) == ["0.3.json", "0.9.json"]
    assert (tmp_path / "forget/0.9.json").read_bytes() == (d / "f.json").read_bytes()
    assert len(load_forget(tmp_path / "forget/0.3.json")["forget"]) < len(load_forget(d / "f.json")["forget"])
    un_stage.run_seed(q, prepared_dir, d / "pre.pt", tmp_path / "forget", 0, tmp_path / "u", tmp_path / "logs")
    assert sorted(f.name for f in (tmp_path / "u").iterdir()) == ["0.3.npz", "0.3.pt", "0.9.npz", "0.9.pt"]
    assert sorted(f.name for f in (tmp_path / "logs").iterdir()) == ["0.3", "0.9"]
    unlearn(q, prepared_dir, d / "pre.pt", d / "f.json", 0, tmp_path / "one.pt")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "u/0.9.pt").read_bytes()
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "u/0.9.npz").read_bytes()


def test_evaluate_model_reads_each_ratio_and_seed_from_its_own_files(prepared_dir, trained, tmp_path):
    """evaluate@{model}: PRETRAIN's outputs per seed, the other models' per seed and ratio."""
    import shutil

    from grmu.stages import evaluate as ev_stage

    p, d = trained
    (tmp_path / "forget/0").mkdir(parents=True)
    shutil.copy(d / "f.json", tmp_path / "forget/0/0.9.json")
    (tmp_path / "models/pretrain").mkdir(parents=True)
    shutil.copy(d / "pre.npz", tmp_path / "models/pretrain/0.npz")
    q = {**p, "ratios": [0.9], "seeds": [0]}
    [result] = ev_stage.run_model(
        q, prepared_dir, "pretrain", tmp_path / "models", tmp_path / "forget", tmp_path / "eval"
    )
    assert json.loads((tmp_path / "eval/0.9-0.json").read_text()) == result
    assert (
        result["metrics"]
        == evaluate(p, prepared_dir, d / "pre.npz", d / "f.json", "pretrain", d / "e2.json")["metrics"]
    )
    assert ev_stage.outputs_file("m", "unlearned", 0.9, 0).as_posix() == "m/unlearned/0/0.9.npz"
    assert ev_stage.outputs_file("m", "pretrain", 0.9, 0).as_posix() == "m/pretrain/0.npz"


def test_a_diverged_unlearning_saves_nothing(prepared_dir, trained, tmp_path):
    """Weights so large (a huge lr) that the logits overflow stop the stage with one line before
    any file is saved (weights that are not finite themselves: tests/test_bad_inputs.py)."""
    import torch

    from grmu import GrmuError
    from grmu.methods import METHODS, register_method

    p, d = trained

    @register_method("_diverge")
    def diverge(ctx):
        with torch.no_grad():
            ctx.model.head.weight.fill_(3e38)  # finite, but its logits are not
        return ctx.model

    try:
        with pytest.raises(
            GrmuError,
            match=r"unlearn _diverge r=0.9 seed=0: the model's outputs are not finite on "
            r"\d+ of \d+ samples; the run diverged and nothing was saved",
        ):
            unlearn(small_params(method="_diverge"), prepared_dir, d / "pre.pt", d / "f.json", 0, tmp_path / "u.pt")
    finally:
        METHODS.remove("_diverge")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_stage_removes_every_file_it_wrote(tmp_path):
    from grmu.runtime import removed_on_failure

    (tmp_path / "out").mkdir()
    (tmp_path / "out/0.5.pt").write_text("x")
    (tmp_path / "one.npz").write_text("x")
    with pytest.raises(RuntimeError), removed_on_failure(tmp_path / "out", tmp_path / "one.npz", None):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(SystemExit), removed_on_failure(tmp_path / "kept"):
        raise SystemExit(0)  # the torchrun launcher's success
    with removed_on_failure(tmp_path / "kept"):
        pass
    assert (tmp_path / "kept").is_dir()


def test_the_stages_that_read_only_tables_never_import_torch(prepared_dir, trained, tmp_path):
    """forget_set, evaluate and aggregate read tables, arrays and JSON only: no torch import (2 s
    of each such stage's start-up); evaluate's run info then names no torch and no device."""
    import shutil
    import subprocess
    import sys
    from importlib import metadata

    p, d = trained
    (tmp_path / "models/pretrain").mkdir(parents=True)
    shutil.copy(d / "pre.npz", tmp_path / "models/pretrain/0.npz")
    code = (
        "import sys, pathlib\n"
        "from grmu.config import validate\n"
        "from grmu.stages import aggregate, evaluate, forget_set\n"
        f"p = validate({{**{p!r}, 'ratios': [0.5, 0.9], 'seeds': [0]}})\n"
        f"t = pathlib.Path({str(tmp_path)!r})\n"
        f"forget_set.run_seed(p, {str(prepared_dir)!r}, 0, t / 'forget' / '0')\n"
        f"evaluate.run_model(p, {str(prepared_dir)!r}, 'pretrain', t / 'models', t / 'forget', t / 'eval')\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert sorted(f.name for f in (tmp_path / "forget/0").iterdir()) == ["0.5.json", "0.9.json"]
    run = json.loads((tmp_path / "eval/0.9-0.json").read_text())["run"]
    assert run["torch"] is None and run["device"] is None and run["dvc"] == metadata.version("dvc")
