"""`grmu` command line: list what can be chosen in params.yaml; reports; recovery after a killed `dvc repro`."""

from __future__ import annotations

import argparse
import json
import sys


def _first_line(doc: str) -> str:
    return doc.splitlines()[0] if doc else ""


def _value(v) -> str:
    """A default as params.yaml writes it."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def params_table(prefix: str | None = None) -> str:
    """Every key of params.yaml (dotted; a method's options under ``methods.<name>``) with its
    allowed values, its default and its doc, each section after a line saying where a null takes
    its value from; with ``prefix`` (``train``, ``methods.scrub``) only the keys under it."""
    from grmu import GrmuError
    from grmu.data import list_datasets
    from grmu.methods import list_methods
    from grmu.schema import OPEN, PARAMS, SECTION_DOCS, leaves

    rows = []  # (key, allowed values, default, doc); a section's line has no allowed values
    for key, sub in PARAMS.items():
        if isinstance(sub, dict) or sub is OPEN:
            rows.append((key, None, None, SECTION_DOCS[key]))
        if key == "datasets":
            rows += [
                (f"{key}.{d.name}.{k}", "checked by the dataset", "(params.yaml)", f"option of {d.name}")
                for d in list_datasets()
                for k in d.options
            ]
        elif key == "methods":
            for m in list_methods():
                rows += [
                    (f"{key}.{m.name}.{k}", o.type_text(), _value(o.default), o.doc) for k, o in m.declared.items()
                ] or [(f"{key}.{m.name}", "no options", "", _first_line(m.doc))]
        else:
            rows += [(k, o.type_text(), _value(o.default), o.doc) for k, o in leaves({key: sub})]
    if prefix is not None:
        rows = [r for r in rows if r[0] == prefix or r[0].startswith(prefix + ".")]
        if not rows:
            raise GrmuError(
                f"unknown key '{prefix}'; valid: a key or section of params.yaml, e.g. "
                f"{', '.join(PARAMS)}, methods.<name>"
            )
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k}: {doc}" if t is None else f"  {k:{width}s}  {v:14s}  {doc} [{t}]" for k, t, v, doc in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="grmu", description="Group-robust machine unlearning.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("methods", help="list unlearning methods (params: method, methods.<name>)")
    sub.add_parser("datasets", help="list datasets (params: dataset, datasets.<name>)")
    par = sub.add_parser("params", help="every key of params.yaml: its allowed values, default and meaning")
    par.add_argument("key", nargs="?", help="only the keys under this one (e.g. train, methods.scrub)")
    rec = sub.add_parser(
        "recipes",
        help="list the recipes (unlearning) and training protocols (model, PRETRAIN, "
        "RETRAIN), or show what one sets (params: recipe, protocol)",
    )
    rec.add_argument("name", nargs="?", help="a recipe or protocol to show (a dataset's name shows both)")
    rec.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    rec.add_argument("--multi-group", type=int, default=None, help="FairFace: the 9 (3) or 25 (5) group forget sets")
    rep = sub.add_parser("report", help="compare every committed result and DVC experiment of a repo (table + figure)")
    rep.add_argument("--repo", default=".", help="the grmu DVC repository (default: here)")
    rep.add_argument("--out", default="reports", help="output folder (default: reports/)")
    rep.add_argument("--num", type=int, default=1, help="include experiments of the last NUM commits (default 1)")
    rep.add_argument("--dataset", default=None, help="report the results on this dataset (default: the newest's)")
    rep.add_argument(
        "--exp",
        nargs="+",
        default=None,
        metavar="GLOB",
        help="only the experiments whose name matches one of these shell patterns (e.g. 'gm-*')",
    )
    rep.add_argument(
        "--paper",
        action="store_true",
        help="instead: the workspace's results next to the paper's published tables (ours / paper / "
        "difference, per ratio, model and metric)",
    )
    page = sub.add_parser(
        "plots-page",
        help="make `dvc plots show` / `dvc plots diff` pages render offline "
        "(writes .dvc/plots.html, sets plots.html_template locally)",
    )
    page.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    page.add_argument(
        "--cache",
        default=None,
        help="folder of the npm tarballs of vega, vega-lite and vega-embed "
        "(default: ~/.cache/grmu/npm; fetched with npm pack if missing)",
    )
    fix = sub.add_parser(
        "recover-lock",
        help="after a killed `dvc repro`: move an empty or half-written dvc.lock (and .dvc/tmp/rwlock) "
        "aside, so that `dvc repro` runs again (stages in DVC's run-cache are restored, not rerun)",
    )
    fix.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    from grmu import sweep  # `grmu sweep`: a grid of DVC experiments (DVC's queue, GPU lanes, SLURM; src/grmu/sweep.py)

    sweep.add_parser(sub)
    args = ap.parse_args(argv)
    if args.cmd == "sweep":
        return sweep.main(args)
    if args.cmd == "methods":
        from grmu.methods import list_methods

        for m in list_methods():
            opts = ", ".join(f"{k}={v}" for k, v in m.options.items()) or "no options"
            print(f"{m.name:12s} {_first_line(m.doc)} [{opts}]")
    elif args.cmd == "datasets":
        from grmu.data import list_datasets

        for spec in list_datasets():
            print(f"{spec.name:14s} {_first_line(spec.doc)} (default forget groups {spec.forget_groups})")
    elif args.cmd == "params":
        from grmu import GrmuError

        try:
            print(params_table(args.key))
        except GrmuError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.cmd == "recipes":
        from grmu import GrmuError
        from grmu import protocols
        from grmu.recipes import available, load_recipe, recipe_table

        try:
            bad = [r for r in args.ratios if not 0 < r <= 1]
            if bad:
                raise GrmuError(f"--ratios {bad[0]:g} is outside (0, 1]; ratios are fractions of the forget group(s)")
            if args.multi_group not in (None, 3, 5):
                raise GrmuError(f"--multi-group {args.multi_group} is invalid; valid: 3 (9 groups), 5 (25 groups)")
            if args.name is None:
                print("recipes (unlearning hyperparameters; param recipe):")
                for name in available():
                    print(f"  {name:14s} {load_recipe(name)['description']}")
                print("training protocols (model, PRETRAIN, RETRAIN; param protocol):")
                for name in protocols.available():
                    print(f"  {name:14s} {protocols.load_protocol(name)['description']}")
            elif args.name not in available() + protocols.available():
                raise GrmuError(
                    f"unknown recipe or protocol '{args.name}'; valid: "
                    f"{', '.join(sorted(set(available() + protocols.available())))}"
                )
            else:
                parts = []
                if args.name in protocols.available():
                    parts.append(protocols.protocol_table(args.name))
                if args.name in available():
                    parts.append(recipe_table(args.name, args.ratios, args.multi_group))
                print("\n\n".join(parts))
        except GrmuError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.cmd == "report":
        from grmu import GrmuError
        from grmu.report.compare import report

        try:
            if args.paper:
                from grmu.report.paper import report_paper

                print(report_paper(args.repo))
            else:
                print(report(args.repo, args.out, args.num, args.dataset, args.exp))
        except GrmuError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.cmd == "plots-page":
        from grmu import GrmuError
        from grmu.report.plots_page import install

        try:
            print(f"wrote {install(args.repo, args.cache)}; `dvc plots show` pages now render offline")
        except GrmuError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.cmd == "recover-lock":
        from grmu import GrmuError
        from grmu.recover import recover

        try:
            print("\n".join(recover(args.repo)))
        except GrmuError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
