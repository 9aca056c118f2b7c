"""Compare the DVC outputs of two checkouts of the pipeline (e.g. before and after a refactor).

    python tools/compare_outputs.py OLD_CHECKOUT NEW_CHECKOUT [--ratio-seed-layout]

Prints, for data/, models/, metrics/ and plots/: files that are byte-identical, files whose
bytes differ but whose content is the same (checkpoints: every tensor equal and the stored
info equal except the keys named by --ignore-info; evaluation JSON: equal metrics), and files
that really differ. Exits 1 when any file really differs or is missing on one side.
Checkpoints are read with weights_only=True. ``--ratio-seed-layout``: OLD is a checkout from
before the per-seed stages (2026-12), whose forget sets and models were files named
``{ratio}-{seed}``; they are compared with the new ``{seed}/{ratio}`` files, and the new
per-sample outputs (``.npz`` beside each checkpoint), which OLD did not have, are not counted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

FOLDERS = ("data/prepared", "data/forget", "models", "metrics", "plots")


def files(root: Path) -> set[str]:
    out = set()
    for folder in FOLDERS:
        base = root / folder
        if base.exists():
            out |= {p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()}
    return out


def per_seed(rel: str) -> str:
    """The path in the per-seed layout of ``rel`` in the ratio-seed layout."""
    m = re.fullmatch(r"(data/forget|models/(?!pretrain/)[^/]+)/([^/]+)-(\d+)\.(json|pt)", rel)
    return f"{m[1]}/{m[3]}/{m[2]}.{m[4]}" if m else rel


def without(d: dict, keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def same_content(a: Path, b: Path, ignore_info) -> bool:
    if a.suffix == ".pt" and "models" in a.parts:
        import torch

        ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
        sa, sb = ca["state_dict"], cb["state_dict"]
        return (
            sa.keys() == sb.keys()
            and all(torch.equal(sa[k], sb[k]) for k in sa)
            and without(ca["info"], ignore_info) == without(cb["info"], ignore_info)
        )
    if a.suffix == ".json" and "eval" in a.parts:
        ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        return ja["metrics"] == jb["metrics"] and without(ja, ("trained",)) == without(jb, ("trained",))
    if a.name == "meta.json":
        ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        return without(ja, ("options",)) == without(jb, ("options",))
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--ratio-seed-layout", action="store_true", help="OLD has the layout before the per-seed stages")
    ap.add_argument(
        "--ignore-info",
        nargs="*",
        default=["source"],
        help="checkpoint info keys whose change is expected (default: source)",
    )
    args = ap.parse_args()
    moved = {rel: per_seed(rel) if args.ratio_seed_layout else rel for rel in files(args.old)}
    fa, fb = set(moved.values()), files(args.new)
    if args.ratio_seed_layout:
        fb = {rel for rel in fb if not (rel.startswith("models/") and rel.endswith(".npz"))}
    old_of = {v: k for k, v in moved.items()}
    identical, equivalent, differ = [], [], []
    for rel in sorted(fa & fb):
        a, b = args.old / old_of[rel], args.new / rel
        if a.read_bytes() == b.read_bytes():
            identical.append(rel)
        elif same_content(a, b, set(args.ignore_info)):
            equivalent.append(rel)
        else:
            differ.append(rel)
    print(f"byte-identical: {len(identical)}")
    print(f"same content, other bytes: {len(equivalent)}" + "".join(f"\n  {r}" for r in equivalent[:50]))
    print(f"different: {len(differ)}" + "".join(f"\n  {r}" for r in differ))
    only = sorted(fa ^ fb)
    print(f"on one side only: {len(only)}" + "".join(f"\n  {r}" for r in only))
    return 1 if differ or only else 0


if __name__ == "__main__":
    sys.exit(main())
