"""The audit on real trained models sees what the paper's population MIA misses (issue 26, docs/audit.md).

Three populations of N small CNNs, trained together by the audit's ensemble trainer on a random
forget set of the embedded colored_mnist: the references (RETRAIN: the remaining set), a second
RETRAIN population from other seeds, and a planted "unlearning" that keeps the forget examples'
influence (trained on the remaining set plus the forget examples repeated). The numbers are the
audit stage's own (``stages.audit.side_numbers``); the paper's MIA is the evaluation's
(``metrics.split_metrics``) on each model."""

import numpy as np
import pytest

from grmu.audit import epsilon_scores, example_epsilon, logit_confidence
from grmu.ensemble import fit_ensemble
from grmu.inference import predictions
from grmu.metrics import mia_efficacy
from grmu.models import new_model
from grmu.splits import load_forget, remaining_indices
from grmu.stages.audit import side_numbers
from grmu.stages.audit_train import outputs
from grmu.stages.forget_set import run as forget_set
from tests.conftest import small_params

N, REPEATS = 8, 8


def population(p, prep, idx, seeds):
    nets = [new_model(p["model"], prep, s, load_weights=False) for s in seeds]
    return [net for net, _ in fit_ensemble(nets, prep, idx, p["train"], seeds, select_best=False)]


@pytest.fixture(scope="module")
def populations(prepared_dir, prep, tmp_path_factory):
    p = small_params(seeds=[0], ratios=[0.1], forget={"kind": "random", "count": 200})
    path = tmp_path_factory.mktemp("power") / "forget.json"
    forget_set(p, prepared_dir, 0.1, 0, path)
    fs = load_forget(path, prep)
    forget = fs["forget"]
    remaining = remaining_indices(prep, forget)
    planted = np.concatenate([remaining] + [forget] * REPEATS)  # the forget examples' influence, kept
    pops = {
        "retrained": population(p, prep, remaining, range(100, 100 + N)),
        "retrained again": population(p, prep, remaining, range(200, 200 + N)),
        "planted": population(p, prep, planted, range(300, 300 + N)),
    }
    sets = {"remaining": remaining, "val": prep.indices("val"), "forget": forget, "test": prep.indices("test")}
    out = {}
    for name, models in pops.items():
        logits, accs, mia = [], [], []
        for k, model in enumerate(models):
            lg, acc = outputs(model, prep, forget, remaining, 512, f"{name} {k}")
            logits.append(lg)
            accs.append(acc)
            pred, loss = predictions(model, prep, sets)
            mia.append(mia_efficacy(*(loss[i] for i in sets.values()), p["eval"]["mia"])["MIA"])
        phi = logit_confidence(np.stack(logits), prep.y[forget])
        out[name] = {"phi": phi, "acc": np.stack(accs), "MIA": np.array(mia)}
    return p["audit"], out


def audit_of(populations, side):
    settings, pops = populations
    ref = pops["retrained"]
    numbers, _, _, _ = side_numbers(pops[side]["phi"], ref["phi"], pops[side]["acc"], ref["acc"], {}, settings)
    return numbers


def test_retrain_against_retrain_is_at_the_best_forgetting_quality_this_n_allows(populations):
    numbers = audit_of(populations, "retrained again")
    # the best F at N models: two draws of one distribution (a perfect unlearning) score this
    rng = np.random.default_rng(0)
    n_examples = populations[1]["retrained"]["phi"].shape[1]
    same = [example_epsilon(rng.normal(size=(N, n_examples)), rng.normal(size=(N, n_examples))) for _ in range(5)]
    ceiling = np.mean([epsilon_scores(e, N).mean() for e in same])
    assert numbers["F"] >= ceiling - 0.03, (numbers["F"], ceiling)
    assert 0.4 <= numbers["ulira"]["AUC"] <= 0.6  # a coin toss: nothing to find


def test_a_planted_unlearning_is_flagged_by_ulira_while_the_papers_mia_stays_near_retrain(populations):
    planted, again = audit_of(populations, "planted"), audit_of(populations, "retrained again")
    # U-LiRA: every forget example against its own RETRAIN distribution
    assert planted["ulira"]["AUC"] >= 0.7, planted["ulira"]
    assert planted["ulira"]["AUC"] >= again["ulira"]["AUC"] + 0.2
    assert planted["ulira"]["AUC"] > planted["population"]["AUC"]  # more than one threshold for all
    assert planted["F"] <= again["F"] - 0.02
    # the paper's MIA (random forest on losses, the evaluation's): within the RETRAIN models' own spread
    pops = populations[1]
    retrain_mia = np.concatenate([pops["retrained"]["MIA"], pops["retrained again"]["MIA"]])
    assert retrain_mia.min() <= pops["planted"]["MIA"].mean() <= retrain_mia.max(), pops["planted"]["MIA"]
    # and accuracy cannot tell either: the retrained models already classify the forget examples
    acc_planted, acc_retrained = pops["planted"]["acc"][:, 2], pops["retrained"]["acc"][:, 2]
    assert abs(acc_planted.mean() - acc_retrained.mean()) < 10
