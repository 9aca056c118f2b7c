"""Extract the paper's per-ratio result tables (appendix Tables 5-16: mean ± std over 3 seeds)
from its text into src/grmu/report/paper_tables.csv, the data of `grmu report --paper`.

    python tools/paper_tables.py ../shared/reference/paper-group-robust-machine-unlearning.md

One row per (dataset, forget groups, ratio, model, REWEIGHT, metric): mean and std as printed.
Models: pretrain, retrain_erm, retrain_reweight, retrain_gdro (grmu's reference names) and the
method names of grmu (l1_sparse, salun, scrub, miu).
"""

from __future__ import annotations

import csv
import hashlib
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/grmu/report/paper_tables.csv"
DATASETS = {"CelebA": "celeba", "Waterbirds": "waterbirds", "FairFace": "fairface", "MultiNLI": "multinli"}
METHODS = {
    "PRETRAIN": "pretrain",
    "RETRAIN": "retrain",
    "RETRAIN + gDRO": "retrain_gdro",
    "L1-SPARSE": "l1_sparse",
    "SALUN": "salun",
    "SCRUB": "scrub",
    "MIU": "miu",
}
CAPTION = re.compile(
    r"^Table (\d+): \*\*Group-robust machine unlearning in (\w+) .*?"
    r"(?:with (0\.\d) unlearning ratio|by sampling from (\d+) groups)"
)
CELL = re.compile(r"^(-?[\d.]+)±([\d.]+)$")


def parse(text: str) -> list[dict]:
    rows, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = CAPTION.match(line)
        if not m or int(m[1]) < 5:  # Tables 1-3 repeat Tables 6, 9 and 12 without the std
            continue
        dataset = DATASETS[m[2]]
        ratio, groups = (float(m[3]), 1) if m[3] else (0.5, int(m[4]))
        header = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("method\t"))
        metrics = [h.split(" ")[0] for h in lines[header].split("\t")[2:]]
        metrics = ["avg_gap" if h == "avg." else h for h in metrics]
        for row in lines[header + 1 :]:
            cells = row.split("\t")
            if len(cells) != len(metrics) + 2:
                break
            name = re.sub(r"</?b>|\s*\(.*?\)", "", cells[0]).strip()
            reweight = cells[1].strip() == "✓"
            model = METHODS[name]
            if model == "retrain":
                model = "retrain_reweight" if reweight else "retrain_erm"
            for metric, cell in zip(metrics, cells[2:]):
                cell = re.sub(r"</?b>", "", cell).strip()
                if cell == "-":
                    continue
                value = CELL.match(cell)
                if value is None:
                    raise ValueError(f"Table {m[1]}: cannot read {cell!r} ({name}, {metric})")
                rows.append(
                    {
                        "table": int(m[1]),
                        "dataset": dataset,
                        "groups": groups,
                        "ratio": ratio,
                        "model": model,
                        "reweight": reweight,
                        "metric": metric,
                        "mean": float(value[1]),
                        "std": float(value[2]),
                    }
                )
    return rows


def main(argv=None) -> int:
    src = Path((argv or sys.argv[1:] or ["../shared/reference/paper-group-robust-machine-unlearning.md"])[0])
    rows = parse(src.read_text())
    tmp = OUT.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(OUT)
    tables = sorted({r["table"] for r in rows})
    print(f"wrote {OUT} ({len(rows)} values from Tables {tables[0]}-{tables[-1]})")
    digest = hashlib.sha256(OUT.read_bytes().replace(b"\r\n", b"\n")).hexdigest()
    print(f"sha256 {digest}: PAPER_SHA256 in src/grmu/report/paper.py must be this (it refuses any other table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
