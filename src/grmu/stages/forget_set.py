"""Stage `forget_set@{seed}`: draw the forget set of every ratio once and persist it (group and
random kinds: ``grmu.splits``; memorization kind: selected by the seed's memorization scores,
``grmu.memorization``). ``run`` draws one, ``run_seed`` one per ratio (``{ratio}.json``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grmu.memorization import centre, load_scores, select
from grmu.prepared import load_prepared
from grmu.splits import forget_groups, forget_size, kind_pool, resolve_groups, sample_forget, save_forget


def run(
    params: dict, prepared: str | Path, ratio: float, seed: int, out: str | Path, memorization: str | Path | None = None
) -> dict:
    prep = load_prepared(prepared, inputs=False)
    forget, kind, count = params["forget"], params["forget"]["kind"], params["forget"]["count"]
    groups = resolve_groups(prep, forget_groups(forget, prep.meta))
    pool = kind_pool(prep, groups, kind)
    extra = None
    if kind == "memorization":
        score, scores = load_scores(memorization, pool)
        pos, subsets = select(scores, forget_size(ratio, len(pool), count), forget["level"], centre(score, scores))
        chosen = np.sort(pool[pos])
        extra = {"level": forget["level"], "score": score, "subsets": {k: np.sort(pool[v]) for k, v in subsets.items()}}
        where = f"the {forget['level']}-memorization ones by {score} scores"
    else:
        chosen = sample_forget(prep, groups, ratio, seed, kind, count)
        where = f"of groups {groups}" if kind == "group" else "drawn uniformly from the train split"
    save_forget(out, chosen, groups, ratio, seed, len(pool), kind, extra)
    print(f"forget set r={ratio} seed={seed}: {len(chosen)} of {len(pool)} samples {where}")
    return {"size": len(chosen), "pool": len(pool)}


def run_seed(params: dict, prepared, seed: int, out_dir, memorization=None) -> list[dict]:
    return [run(params, prepared, r, seed, Path(out_dir) / f"{r}.json", memorization) for r in params["ratios"]]
