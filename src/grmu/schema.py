"""The declared schema of ``params.yaml``: every key once, with its type and range, its built-in
default and one line of doc (``grmu params`` prints it).

``PARAMS`` is the tree of keys: a leaf is an ``Option``, a section a dict, and ``OPEN`` marks the
two sections whose keys belong to a registered dataset or method (``datasets.<name>``: the keys
the dataset registers, ``grmu.data``; ``methods.<name>``: the ``Option``s a method declares in
its ``register_method`` call, ``grmu.methods``). Where a key's value comes from:

* ``model``, ``train``, ``retrain`` (``LAYERS``): a key left null in params.yaml takes the
  dataset's training protocol's value, else the default declared here (``grmu.protocols``);
* ``unlearn`` and ``methods.<name>``: null takes the recipe's value, else the default declared
  here or by the method (``grmu.recipes``);
* every other key is set in params.yaml (null only where its doc gives null a meaning); the
  repository's file holds the defaults declared here (tests/test_config.py checks it).

``grmu.config`` checks a params file against this schema; the rules that tie keys together
(``forget.count`` needs a random or memorization forget set, ...) are there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from grmu import GrmuError

OPEN = "open"  # a section whose keys a dataset or a method registers


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Option:
    """One key: its ``kind`` (int, number, bool, choice, text, rule, any) with its bounds or
    choices, its built-in ``default``, whether null is a value of its own (``null``: the doc says
    what it means) and a line of ``doc``. ``rule(name, value)`` checks a ``rule`` kind."""

    default: Any
    doc: str
    kind: str = "any"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    null: bool = False
    rule: Callable | None = None
    what: str = ""  # the allowed values in words (text and rule kinds)

    def describe(self) -> str:
        """The allowed values in words, as the error messages say them."""
        if self.kind == "int":
            if self.high is None and self.low in (0, 1):
                return "a positive integer" if self.low == 1 else "a non-negative integer"
            return "an integer" + _bounds(self.low, False, self.high, False)
        if self.kind == "number":
            return "a finite number" + _bounds(self.low, self.low_open, self.high, self.high_open)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        return self.what or "any value"

    def hint(self) -> str:
        """The range again where ``describe`` leaves it implicit: ``integers >= 1`` for a positive
        integer, the interval ``(0, 1]`` of a number bounded on both sides."""
        if self.kind == "int" and self.high is None and self.low in (0, 1):
            return f"; valid: integers >= {self.low}"
        if self.kind == "number" and self.low is not None and self.high is not None:
            return (
                f"; valid: {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
            )
        return ""

    def type_text(self) -> str:
        """``describe()`` with null where null is allowed (for ``grmu params``)."""
        return ("null or " if self.null else "") + self.describe()

    def check(self, name: str, v) -> None:
        """Refuse ``v`` with one line naming ``name`` unless this option allows it."""
        if v is None and self.null:
            return
        if self.kind == "choice":
            if isinstance(v, (list, dict)) or v not in self.choices:
                raise GrmuError(f"{name} '{v}' is unknown; valid: {', '.join(map(str, self.choices))}")
            return
        if self.kind == "rule":
            self.rule(name, v)
            return
        if self.kind == "int":
            ok = is_int(v) and _within(v, self.low, False, self.high, False)
        elif self.kind == "number":
            ok = is_number(v) and _within(v, self.low, self.low_open, self.high, self.high_open)
        elif self.kind == "bool":
            ok = isinstance(v, bool)
        elif self.kind == "text":
            ok = isinstance(v, str) and bool(v)
        else:
            ok = True
        if not ok:
            raise GrmuError(f"{name} must be {self.describe()}, got {v!r}{self.hint()}")


def _within(v, low, low_open, high, high_open) -> bool:
    above = low is None or (v > low if low_open else v >= low)
    return above and (high is None or (v < high if high_open else v <= high))


def _bounds(low, low_open, high, high_open) -> str:
    parts = ([f"{'>' if low_open else '>='} {low:g}"] if low is not None else []) + (
        [f"{'<' if high_open else '<='} {high:g}"] if high is not None else []
    )
    return (" " + " and ".join(parts)) if parts else ""


def Int(default, doc, low=1, high=None, null=False) -> Option:  # noqa: N802  (constructors of Option)
    return Option(default, doc, "int", low=low, high=high, null=null)


def Number(default, doc, low=None, high=None, low_open=False, high_open=False, null=False) -> Option:  # noqa: N802
    return Option(default, doc, "number", low, high, low_open, high_open, null=null)


def Bool(default, doc) -> Option:  # noqa: N802
    return Option(default, doc, "bool")


def Choice(default, doc, choices, null=False) -> Option:  # noqa: N802
    return Option(default, doc, "choice", choices=tuple(choices), null=null)


def Text(default, doc, what="a non-empty string", null=False) -> Option:  # noqa: N802
    return Option(default, doc, "text", null=null, what=what)


def Rule(default, doc, rule, what, null=False) -> Option:  # noqa: N802
    """An option checked by ``rule(name, value)`` (lists, mappings)."""
    return Option(default, doc, "rule", null=null, rule=rule, what=what)


def declare(options: dict) -> dict:
    """``options`` with every bare default turned into an ``Option`` that accepts any value."""
    return {k: v if isinstance(v, Option) else Option(v, "(not declared)") for k, v in options.items()}


def defaults(tree: dict) -> dict:
    """The defaults of a section (or of a method's declared options), nested like it."""
    return {k: defaults(v) if isinstance(v, dict) else v.default for k, v in tree.items() if v is not OPEN}


def leaves(tree: dict, prefix: str = ""):
    """``(dotted key, Option)`` of every leaf of ``tree``, in order (open sections left out)."""
    for key, sub in tree.items():
        if isinstance(sub, dict):
            yield from leaves(sub, f"{prefix}{key}.")
        elif sub is not OPEN:
            yield f"{prefix}{key}", sub


# --- allowed values, named for the modules that act on them ---------------------------------
SAM_MODES = ("none", "min", "max")  # grmu.sam
SCHEDULES = ("cosine", "const")
OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("fp32", "bf16", "auto")  # grmu.models.run_precision
BACKENDS = ("auto", "nccl", "gloo")  # grmu.distributed
MIA_MODES = ("best_of_grid", "single")
REFERENCES = ("retrain_reweight", "retrain_erm", "retrain_gdro")  # grmu.report.gaps
MULTI_GROUPS = (3, 5)
FORGET_KINDS = ("group", "random", "memorization")  # grmu.splits
FORGET_LEVELS = ("high", "mid", "low", "mix")  # grmu.memorization
MEMORIZATION_PROXIES = ("confidence", "max_conf", "entropy", "bi_acc")  # recorded along one training run
MEMORIZATION_SCORES = ("auto", "none", "heldout", *MEMORIZATION_PROXIES, "ho_ret", "file")
AUDIT_ENSEMBLE = ("auto", "on", "off")  # grmu.stages.audit_models
AUDIT_VARIANCES = ("per_example", "global")  # grmu.audit.VARIANCES
AUDIT_CENTERS = ("mean", "median")  # grmu.audit.CENTERS


def _unique_list(name: str, v, item_ok, item_error: str, want: str) -> None:
    if not isinstance(v, list) or not v:
        raise GrmuError(f"{name} must be a non-empty list of {want}, got {v!r}")
    for item in v:
        if not item_ok(item):
            raise GrmuError(f"{item_error.format(item)}; {name} must be {want}")
    if len({repr(i) for i in v}) != len(v):
        raise GrmuError(f"{name} {v!r} repeats a value; list each once")


def _ratios(name, v) -> None:
    _unique_list(name, v, lambda r: is_number(r) and 0 < r <= 1, "ratio {!r} is outside (0, 1]", "numbers in (0, 1]")


def _seeds(name, v) -> None:
    _unique_list(
        name, v, lambda s: is_int(s) and s >= 0, "seed {!r} is not a non-negative integer", "non-negative integers"
    )


def _audit_ratios(name, v) -> None:
    if v == []:
        return
    _unique_list(name, v, lambda r: is_number(r) and 0 < r <= 1, "ratio {!r} is outside (0, 1]", "numbers in (0, 1]")


def _groups(name, v) -> None:
    if v is not None and (
        not isinstance(v, list)
        or not v
        or not all(isinstance(gr, (list, tuple)) and len(gr) == 2 and all(is_int(x) and x >= 0 for x in gr) for gr in v)
    ):
        raise GrmuError(f"{name} must be a list of [y, a] pairs of non-negative integers, got {v!r}")


def _multi_group(name, v) -> None:
    if v is not None and (isinstance(v, bool) or v not in MULTI_GROUPS):
        raise GrmuError(f"{name} {v!r} is invalid; valid: null, 3 (9 groups), 5 (25 groups)")


def _name(default, doc) -> Option:
    return Text(default, doc, what="a name (a non-empty string)")


SAM = {  # train.sam / unlearn.sam (grmu.sam); mode none = plain steps
    "mode": Choice("none", "none: plain steps; min: SAM; max: sharpness maximisation", SAM_MODES),
    "rho": Number(0.1, "perturbation radius", low=0, low_open=True),
    "lamb": Number(1.0, "weight of the sharpness term (min with 1 = plain SAM)", low=0),
    "adaptive": Bool(False, "ASAM: the perturbation scaled by |w|"),
}


def loop(epochs, batch_size, lr, weight_decay, warmup_epochs) -> dict:
    """The training-loop keys of ``train`` and ``unlearn``, with the given defaults."""
    return {
        "epochs": Int(epochs, "epochs"),
        "batch_size": Int(batch_size, "batch size"),
        "lr": Number(lr, "peak learning rate", low=0, low_open=True),
        "momentum": Number(0.9, "SGD momentum (unused by adamw)", low=0, high=1, high_open=True),
        "weight_decay": Number(weight_decay, "weight decay", low=0),
        "warmup_epochs": Int(warmup_epochs, "epochs of linear lr warm-up, per step", low=0),
        "schedule": Choice("cosine", "lr schedule after the warm-up", SCHEDULES),
        "augment": Bool(True, "the dataset's training augmentation (random shifts of images)"),
        "optimizer": Choice("sgd", "SGD with momentum, or AdamW", OPTIMIZERS),
        "sam": SAM,
    }


def _retrain(**extra) -> dict:
    return {
        "lr": Number(None, "this RETRAIN's lr (null = train.lr)", low=0, low_open=True, null=True),
        "batch_size": Int(None, "this RETRAIN's batch size (null = train.batch_size)", null=True),
        "precision": Choice(None, "this RETRAIN's precision (null = model.precision)", PRECISIONS, null=True),
        **extra,
    }


PARAMS: dict = {
    "dataset": _name("colored_mnist", "the dataset (`grmu datasets`)"),
    "data_dir": _name("data/raw", "root folder of the real datasets"),
    "seeds": Rule(
        [0, 1, 2],
        "experiment seeds (model init, batch order, forget-set draw)",
        _seeds,
        "distinct non-negative integers",
    ),
    "ratios": Rule(
        [0.1, 0.5, 0.9], "fractions of the forget group(s) to forget", _ratios, "distinct numbers in (0, 1]"
    ),
    "method": _name("finetune", "the unlearning method (`grmu methods`)"),
    "reweight": Bool(False, "REWEIGHT sampler on the method's remaining-set passes"),
    "recipe": _name("auto", "unlearning hyperparameters: auto (the dataset's recipe) | none | a recipe name"),
    "protocol": _name("auto", "model, PRETRAIN and RETRAIN settings: auto (the dataset's protocol) | none | a name"),
    "forget": {
        "kind": Choice(
            "group", "drawn from the forget groups, uniformly from train, or by memorization score", FORGET_KINDS
        ),
        "level": Choice(
            "high", "memorization only: the forget set's memorization level (mix: n/3 of each)", FORGET_LEVELS
        ),
        "count": Int(None, "random / memorization: forget-set size (null = int(ratio * |train|))", null=True),
        "groups": Rule(
            None,
            "forget groups as [[y, a], ...] (null = the dataset's default)",
            _groups,
            "a list of [y, a] pairs of non-negative integers",
            null=True,
        ),
        "multi_group": Rule(
            None, "fairface only: 3 | 5 = the paper's 9- | 25-group forget sets", _multi_group, "3 or 5", null=True
        ),
    },
    "memorization": {
        "score": Choice(
            "auto",
            "per-sample memorization score (auto: heldout for forget.kind memorization, else none)",
            MEMORIZATION_SCORES,
        ),
        "models": Int(16, "heldout: K models, each trained on part of train", low=2),
        "fraction": Number(
            0.7, "heldout: share of train each model sees", low=0, low_open=True, high=1, high_open=True
        ),
        "epochs": Int(None, "heldout / proxies: training epochs (null = train.epochs)", null=True),
        "ft_lr": Number(0.1, "ho_ret: constant SGD lr of the fine-tuning on the test split", low=0, low_open=True),
        "ft_epochs": Int(30, "ho_ret: at most this many epochs (stops after 4 without a lower loss)"),
        "file": Text(None, "score file: .npz under data_dir, entry i = prepared sample i", null=True),
        "key": Text(None, "score file: the array's name (null = tr_mem, then memorization)", null=True),
    },
    "datasets": OPEN,
    "model": {
        "arch": Text("small_cnn", "small_cnn | resnet18 | resnet18_cifar (images); bert | tiny_bert (multinli)"),
        "width": Int(16, "small_cnn channels; tiny_bert hidden size"),
        "pretrained": Text("none", "resnet18: ImageNet weights file; bert: HF folder; none"),
        "precision": Choice(
            "fp32", "bf16: autocast in training, unlearning, evaluation; auto: bf16 on CUDA", PRECISIONS
        ),
    },
    # PRETRAIN and RETRAIN: the embedded datasets' small CPU setup (a small CNN, 10 epochs)
    "train": loop(epochs=10, batch_size=64, lr=0.02, weight_decay=0.002, warmup_epochs=1),
    "retrain": {
        "erm": _retrain(),
        "reweight": _retrain(),
        "gdro": _retrain(eta=Number(0.1, "Group-DRO step size", low=0, low_open=True)),
    },
    # unlearning: the paper's common setup (fact sheet §5.1)
    "unlearn": loop(epochs=10, batch_size=64, lr=0.01, weight_decay=5e-4, warmup_epochs=0),
    "methods": OPEN,
    "eval": {
        "batch_size": Int(512, "evaluation batch size"),
        "mia": Choice("best_of_grid", "membership-inference attack: the paper's 6 random forests, or one", MIA_MODES),
        "reference": Choice("retrain_reweight", "reference of avg. gap, ToW and ToW-MIA", REFERENCES),
    },
    "audit": {  # the forgetting audit (docs/audit.md): stages audit_models@{ratio}, audit@{ratio}
        "ratios": Rule(
            [], "ratios to audit, each one of `ratios` ([] = no audit)", _audit_ratios, "[] or ratios of `ratios`"
        ),
        "models": Int(16, "models per side: N unlearned and N RETRAIN references, from independent seeds", low=3),
        "seed": Int(1000, "first seed of the audit's models (N originals, then N references)", low=0),
        "ensemble": Choice("auto", "train the models together (auto: where the model allows it)", AUDIT_ENSEMBLE),
        "variance": Choice(
            "per_example", "U-LiRA's Gaussians: a variance per example, or one per side", AUDIT_VARIANCES
        ),
        "center": Choice(
            "mean", "U-LiRA's Gaussians centred on the mean (LiRA's paper) or median (its code)", AUDIT_CENTERS
        ),
        "delta": Number(
            1e-5, "delta of the per-example (epsilon, delta) estimate", low=0, high=1, low_open=True, high_open=True
        ),
    },
    "distributed": {
        "processes": Int(1, "training processes per PRETRAIN / RETRAIN stage under torchrun (1 = no DDP)"),
        "backend": Choice("auto", "process-group backend (auto: nccl on CUDA GPUs, else gloo)", BACKENDS),
    },
}
# where a null in params.yaml takes its value from, per section (else null is refused, or means
# what the key's doc says)
LAYERS = {"model": "protocol", "train": "protocol", "retrain": "protocol", "unlearn": "recipe", "methods": "recipe"}
SECTION_DOCS = {
    "forget": "the forget set of each ratio and seed",
    "memorization": "per-sample memorization scores of the train split",
    "datasets": "each dataset's options, all given in params.yaml (`grmu datasets`)",
    "model": "the model; null = the protocol's value, else the default",
    "train": "PRETRAIN and RETRAIN; null = the protocol's value, else the default",
    "retrain": "per-variant settings of the RETRAIN references; null = the protocol's value, else the default",
    "unlearn": "shared by every method; null = the recipe's value, else the default",
    "methods": "each method's own options; null = the recipe's value, else the method's default",
    "eval": "evaluation",
    "audit": "the forgetting audit: per-example attacks on N unlearned vs N RETRAIN models (docs/audit.md)",
    "distributed": "data-parallel PRETRAIN / RETRAIN",
}
PROTOCOL_DEFAULTS = {s: defaults(PARAMS[s]) for s in ("model", "train", "retrain")}  # grmu.protocols
UNLEARN_DEFAULTS = defaults(PARAMS["unlearn"])  # grmu.recipes
