"""Stage `forget_set@{ratio}-{seed}`: draw the forget set once and persist it."""
from __future__ import annotations

from pathlib import Path

from grmu.prepared import load_prepared
from grmu.splits import forget_groups, kind_pool, resolve_groups, sample_forget, save_forget


def run(params: dict, prepared: str | Path, ratio: float, seed: int, out: str | Path) -> dict:
    prep = load_prepared(prepared)
    kind, count = params["forget"]["kind"], params["forget"]["count"]
    groups = resolve_groups(prep, forget_groups(params["forget"], prep.meta))
    forget = sample_forget(prep, groups, ratio, seed, kind, count)
    pool = kind_pool(prep, groups, kind)
    save_forget(out, forget, groups, ratio, seed, len(pool), kind)
    where = f"of groups {groups}" if kind == "group" else "drawn uniformly from the train split"
    print(f"forget set r={ratio} seed={seed}: {len(forget)} of {len(pool)} samples {where}")
    return {"size": len(forget), "pool": len(pool)}
