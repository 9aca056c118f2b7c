"""The forgetting audit's stages (audit_train, audit_unlearn, audit): each population comes from
the models it names, the numbers from the right populations, bad settings stop before training."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from grmu import GrmuError
from grmu.audit import (
    epsilon_scores,
    example_epsilon,
    leave_one_out,
    logit_confidence,
    population_scores,
    ulira_scores,
)
from grmu.config import validate
from grmu.inference import model_accuracy, predict
from grmu.models import load_checkpoint, new_model
from grmu.prepared import group_names, load_prepared
from grmu.splits import load_forget, remaining_indices
from grmu.stages import audit, audit_train, audit_unlearn
from grmu.stages.forget_set import run as forget_set
from grmu.stages.unlearn import unlearn_model
from tests.conftest import small_params

N = 3


def audit_params(**over):
    return small_params(
        train={"epochs": 1},
        seeds=[0],
        ratios=[0.9],
        audit={"ratios": [0.9], "models": N, "seed": 40, "ensemble": "off", **over},
    )


@pytest.fixture(scope="module")
def audited(prepared_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    p = audit_params()
    forget_set(p, prepared_dir, 0.9, 0, d / "f.json")
    audit_train.run(p, prepared_dir, d / "f.json", d / "trained")
    audit_unlearn.run(p, prepared_dir, d / "f.json", d / "trained", d / "unl.npz")
    result = audit.run(
        p, prepared_dir, d / "f.json", d / "trained", d / "unl.npz", d / "a.json", d / "a.csv", d / "a.png"
    )
    return p, d, result


def arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_a_rerun_writes_the_same_bytes(prepared_dir, audited, tmp_path):
    """Same params and seeds: the populations' files are byte-identical (no wall time in them), so
    a forced rerun of audit_train or audit_unlearn leaves DVC nothing to rerun downstream."""
    p, d, _ = audited
    audit_train.run(p, prepared_dir, d / "f.json", tmp_path / "trained")
    audit_unlearn.run(p, prepared_dir, d / "f.json", tmp_path / "trained", tmp_path / "unl.npz")
    for name in ("trained/references.npz", "unl.npz", *(f"trained/original/{s}.pt" for s in (40, 41, 42))):
        assert (tmp_path / name).read_bytes() == (d / name).read_bytes(), name


def test_each_population_is_made_of_the_models_it_names(prepared_dir, audited):
    p, d, _ = audited
    prep = load_prepared(prepared_dir)
    fs = load_forget(d / "f.json", prep)
    forget, remaining = fs["forget"], remaining_indices(prep, fs["forget"])
    ref = arrays(d / "trained" / "references.npz")
    info = json.loads(str(ref["info"]))
    assert info["seeds"] == {"original": [40, 41, 42], "retrained": [43, 44, 45]}
    assert sorted(x.name for x in (d / "trained" / "original").iterdir()) == ["40.pt", "41.pt", "42.pt"]
    unl = arrays(d / "unl.npz")
    for k, seed in enumerate(info["seeds"]["original"]):
        model = new_model(p["model"], prep, seed, load_weights=False)
        load_checkpoint(d / "trained" / "original" / f"{seed}.pt", model)
        np.testing.assert_array_equal(ref["logits_original"][k], predict(model, prep, forget).numpy())
        expected = [model_accuracy(model, prep, s) for s in (remaining, prep.indices("test"), forget)]
        np.testing.assert_allclose(ref["acc_original"][k], expected)
        unlearned, _, _ = unlearn_model(p, prep, model, fs, seed)
        np.testing.assert_array_equal(unl["logits_unlearned"][k], predict(unlearned, prep, forget).numpy())
    # the references never saw a forget example: retrained on the remaining set, they differ
    # from the originals (same architecture, other seeds and data)
    assert not np.allclose(ref["logits_retrained"], ref["logits_original"])
    # forget accuracy drops (on the mean: one original of these 1-epoch models can miss the forget
    # group too, as one did on a GPU)
    assert ref["acc_retrained"][:, 2].mean() < ref["acc_original"][:, 2].mean() - 10


def test_the_numbers_come_from_the_right_populations(prepared_dir, audited):
    p, d, result = audited
    prep = load_prepared(prepared_dir, inputs=False)
    forget = load_forget(d / "f.json", prep)["forget"]
    y = prep.y[forget]
    ref, unl = arrays(d / "trained" / "references.npz"), arrays(d / "unl.npz")
    phi_u, phi_o, phi_r = (
        logit_confidence(a, y) for a in (unl["logits_unlearned"], ref["logits_original"], ref["logits_retrained"])
    )
    saved = json.loads((d / "a.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for side, phi in (("unlearned", phi_u), ("original", phi_o)):
        eps = example_epsilon(phi, phi_r, delta=1e-5)
        assert saved[side]["F"] == pytest.approx(epsilon_scores(eps, N).mean())
        assert saved[side]["eps_mean"] == pytest.approx(eps.mean())
        scores, member = leave_one_out(phi, phi_r)
        from sklearn.metrics import roc_auc_score

        assert saved[side]["ulira"]["AUC"] == pytest.approx(roc_auc_score(member.ravel(), scores.ravel()))
        pop, _ = leave_one_out(phi, phi_r, population_scores)
        assert saved[side]["population"]["AUC"] == pytest.approx(roc_auc_score(member.ravel(), pop.ravel()))
    assert saved["unlearned"]["acc"]["forget"] == pytest.approx(unl["acc_unlearned"][:, 2].mean())
    assert saved["retrained"]["acc"]["test"] == pytest.approx(ref["acc_retrained"][:, 1].mean())
    # per group: the forget set is in the forget group, so one row, equal to the whole
    names = group_names(prep.meta)
    (group,) = {names[g] for g in prep.g[forget]}
    assert list(saved["unlearned"]["groups"]) == [group]
    assert saved["unlearned"]["groups"][group]["F"] == pytest.approx(saved["unlearned"]["F"])
    assert saved["unlearned"]["groups"][group]["n"] == len(forget)
    rows = pd.read_csv(d / "a.csv")
    assert rows["example"].tolist() == forget.tolist()
    np.testing.assert_allclose(rows["eps"], example_epsilon(phi_u, phi_r), rtol=1e-5)
    np.testing.assert_allclose(rows["eps_original"], example_epsilon(phi_o, phi_r), rtol=1e-5)
    assert (d / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attack_settings_reach_the_attack(prepared_dir, audited, tmp_path):
    p, d, result = audited
    p = audit_params(variance="global", center="median")
    prep = load_prepared(prepared_dir, inputs=False)
    forget = load_forget(d / "f.json", prep)["forget"]
    other = audit.run(
        p,
        prepared_dir,
        d / "f.json",
        d / "trained",
        d / "unl.npz",
        *(tmp_path / n for n in ("a.json", "a.csv", "a.png")),
    )
    y = prep.y[forget]
    phi_u = logit_confidence(arrays(d / "unl.npz")["logits_unlearned"], y)
    phi_r = logit_confidence(arrays(d / "trained" / "references.npz")["logits_retrained"], y)
    from functools import partial

    from sklearn.metrics import roc_auc_score

    scores, member = leave_one_out(phi_u, phi_r, partial(ulira_scores, variance="global", center="median"))
    assert other["unlearned"]["ulira"]["AUC"] == pytest.approx(roc_auc_score(member.ravel(), scores.ravel()))
    assert other["settings"] == {"variance": "global", "center": "median", "delta": 1e-5}
    assert other["unlearned"]["F"] == result["unlearned"]["F"]  # the competition's ε does not use them


def test_the_audit_is_reproducible_to_the_byte(prepared_dir, audited, tmp_path):
    p, d, _ = audited
    out = [tmp_path / n for n in ("a.json", "a.csv", "a.png")]
    audit.run(p, prepared_dir, d / "f.json", d / "trained", d / "unl.npz", *out)
    assert out[0].read_bytes() == (d / "a.json").read_bytes()
    assert out[1].read_bytes() == (d / "a.csv").read_bytes()


def test_memorization_levels_label_each_forget_example():
    fs = {
        "kind": "memorization",
        "level": "mix",
        "subsets": {"high": np.array([5, 9]), "mid": np.array([1]), "low": np.array([7])},
    }
    assert audit.levels(fs, np.array([9, 1, 7, 5])).tolist() == ["high", "mid", "low", "high"]
    assert audit.levels({"kind": "memorization", "level": "low"}, np.array([3, 4])).tolist() == ["low", "low"]
    assert audit.levels({"kind": "random"}, np.array([3])) is None


@pytest.mark.parametrize(
    "over, message",
    [
        ({"audit": {"ratios": [0.3]}}, "audit.ratios: ratio 0.3 is not one of ratios"),
        ({"audit": {"models": 2}}, "audit.models must be an integer >= 3"),
        ({"audit": {"ensemble": "maybe"}}, "audit.ensemble 'maybe' is unknown; valid: auto, on, off"),
        ({"audit": {"delta": 0}}, "audit.delta must be"),
    ],
)
def test_bad_audit_params_get_one_line(over, message):
    from tests._repo import merge

    p = merge(small_params(), over)
    with pytest.raises(GrmuError, match=message.replace("(", r"\(").replace("[", r"\[")):
        validate(p)


@pytest.mark.parametrize(
    "over, why",
    [
        ({"model": {"arch": "resnet18"}}, "model.arch resnet18"),
        ({"eval": {"reference": "retrain_gdro"}}, "Group-DRO loss"),
        ({"train": {"sam": {"mode": "min"}}}, "train.sam mode min"),
    ],
)
def test_an_ensemble_that_cannot_be_built_is_refused_before_training(prepared_dir, tmp_path, over, why):
    from grmu.stages.check_params import run as check_params
    from tests._repo import merge

    p = merge(audit_params(ensemble="on"), over)
    with pytest.raises(GrmuError, match=f"audit.ensemble on: .*{why}.*; valid: auto, off"):
        check_params(p, tmp_path / "ok")
    assert not (tmp_path / "ok").exists()
    assert False in audit_train.check(merge(audit_params(ensemble="auto"), over))  # that side: one at a time
    assert audit_train.check(audit_params(ensemble="auto")) == [True, True]
    assert audit_train.check(audit_params(ensemble="off")) == [False, False]


def test_populations_of_different_sizes_or_forget_sets_are_refused(prepared_dir, audited, tmp_path):
    p, d, _ = audited
    out = [tmp_path / n for n in ("a.json", "a.csv", "a.png")]
    unl = arrays(d / "unl.npz")
    info = json.loads(str(unl["info"]))
    bad = tmp_path / "unl.npz"
    np.savez(
        bad,
        **{
            **unl,
            "info": np.array(json.dumps({**info, "models": 2})),
            "logits_unlearned": unl["logits_unlearned"][:2],
            "acc_unlearned": unl["acc_unlearned"][:2],
        },
    )
    with pytest.raises(GrmuError, match="hold different numbers of models"):
        audit.run(p, prepared_dir, d / "f.json", d / "trained", bad, *out)
    np.savez(bad, **{**unl, "forget": unl["forget"][::-1]})
    with pytest.raises(GrmuError, match="not those of the forget set"):
        audit.run(p, prepared_dir, d / "f.json", d / "trained", bad, *out)
    bad.write_bytes(b"not a zip")
    with pytest.raises(GrmuError, match="cannot read audit models"):
        audit.run(p, prepared_dir, d / "f.json", d / "trained", bad, *out)
    assert not any(o.exists() for o in out)


def test_a_diverged_audit_model_is_never_recorded(prep):
    model = new_model(audit_params()["model"], prep, 0)
    with torch.no_grad():
        model.head.bias.fill_(float("inf"))
    with pytest.raises(GrmuError, match="not finite"):
        audit_train.outputs(model, prep, prep.indices("train")[:5], prep.indices("train")[5:], 64, "audit model")


def _side(F: float, auc: float, n: int | None = None) -> dict:
    attack = {"AUC": auc, "TPR@FPR=0.01": auc / 10, "TPR@FPR=0.001": auc / 100}
    side = {"F": F, "eps_mean": 1 / F, "ulira": attack, "population": {**attack, "AUC": auc - 0.1}}
    return side if n is None else {**side, "n": n}


def test_the_report_has_a_row_per_group_and_per_memorization_level_with_doing_nothing_beside():
    from grmu.report.audit import audit_table

    def result(method, base):
        levels = {lv: _side(base + k / 100, 0.6 + k / 10, 4 - k) for k, lv in enumerate(("low", "high", "mid"))}
        groups = {"g0": _side(base + 0.05, 0.55, 5), "g1": _side(base + 0.06, 0.65, 4)}
        unl = {**_side(base, 0.7), "score": base / 2, "groups": groups, "levels": levels}
        orig = {**_side(base / 3, 0.9), "score": 0.0, "groups": {g: _side(base / 4, 0.8, 1) for g in groups}}
        orig["levels"] = {lv: _side(base / 5 + k / 1000, 0.85, 1) for k, lv in enumerate(("high", "mid", "low"))}
        return {
            "ratio": 0.1,
            "models": 8,
            "method": method,
            "reweight": False,
            "n_forget": 9,
            "unlearned": unl,
            "original": orig,
        }

    audits = [{"label": f"{m.upper()}", "result": result(m, b)} for m, b in (("salun", 0.3), ("scrub", 0.6))]
    table = audit_table(audits).set_index(["method", "group"])
    assert list(table.loc["SALUN"].index) == [
        "all",
        "g0",
        "g1",
        "memorization high",
        "memorization mid",
        "memorization low",
    ]
    assert table.loc[("doing nothing (PRETRAIN)", "all"), "F"] == pytest.approx(0.1)  # the first audit's originals
    assert table.loc[("SCRUB", "all"), ["F", "F (doing nothing)", "score"]].tolist() == pytest.approx([0.6, 0.2, 0.3])
    row = table.loc[("SCRUB", "memorization high")]  # levels as written: low 0, high 1, mid 2
    assert row[["F", "n forget", "U-LiRA AUC", "population AUC"]].tolist() == pytest.approx([0.61, 3, 0.7, 0.6])
    assert row["F (doing nothing)"] == pytest.approx(0.12)  # the originals' own high level
    assert table.loc[("SCRUB", "g1"), ["F", "F (doing nothing)"]].tolist() == pytest.approx([0.66, 0.15])
    single = result("scrub", 0.6)
    for part in ("unlearned", "original"):
        single[part]["groups"] = {"g0": single[part]["groups"]["g0"]}
        del single[part]["levels"]
    rows = audit_table([{"label": "SCRUB", "result": single}])
    assert rows["group"].tolist() == ["all", "all"]  # one group, no levels: only the whole


def test_the_eps_plots_split_by_memorization_level_where_there_is_one():
    df = pd.DataFrame({"group": ["b", "a", "b"], "level": ["low", "high", ""]})
    assert audit.panels(df) == ("level", ["high", "low"])
    assert audit.panels(df.assign(level="")) == ("group", ["a", "b"])
    assert audit.panels(df.drop(columns="level")) == ("group", ["a", "b"])


def test_every_experiment_of_a_report_plot_gets_its_own_colour():
    """A comparison with RUM draws 11 and more experiments: matplotlib's 10-colour cycle would give
    the first and the eleventh the same colour."""
    from grmu.report.audit import line_colors

    assert line_colors(3) == ["C0", "C1", "C2"]
    for n in (11, 16, 20):
        assert len({tuple(c) for c in line_colors(n)}) == n
