"""Stage `forget_set@{ratio}-{seed}`: draw the forget set once and persist it."""
from __future__ import annotations

from pathlib import Path

from grmu.prepared import load_prepared
from grmu.splits import forget_groups, forget_pool, resolve_groups, sample_forget, save_forget


def run(params: dict, prepared: str | Path, ratio: float, seed: int, out: str | Path) -> dict:
    prep = load_prepared(prepared)
    groups = resolve_groups(prep, forget_groups(params["forget"], prep.meta))
    forget = sample_forget(prep, groups, ratio, seed)
    pool = forget_pool(prep, groups)
    save_forget(out, forget, groups, ratio, seed, len(pool))
    print(f"forget set r={ratio} seed={seed}: {len(forget)} of {len(pool)} samples of groups {groups}")
    return {"size": len(forget), "pool": len(pool)}
