"""MIU, mutual-information-aware machine unlearning (the paper's method, §3.4, Algorithm 1;
fact sheet §5.5 and §8.4)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from grmu import GrmuError
from grmu.augment import train_augmentation
from grmu.inference import to_input
from grmu.methods import UnlearnContext, checked_options, get_method, register_method
from grmu.schema import Bool, Choice, Int, Number

MARGINALS = ("shuffle", "uniform")
ORIGINAL_FEATURES = ("original", "unlearned")
TUNE_MODES = ("eval", "train")
TUNE_AUGMENTS = ("always", "unlearn")
ORIGINAL_MODES = ("auto", "train", "eval")
# offsets that keep MIU's random streams apart from the training loop's (seeded with seed)
_SAMPLING_STREAM, _INIT_STREAM = 303, 404


def log_mean_exp(t: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(t, dim=0) - math.log(t.shape[0])


class MINE(nn.Module):
    """Mutual information neural estimator (Belghazi et al., 2018) between features z and groups g.

    ``T_psi``: Linear(d_z + |G| -> hidden), ReLU, Linear(hidden -> 1) on ``[z, one_hot(g)]``.
    The estimate is ``M = mean T(z, g) - log mean exp T(z, g_bar)``. Calling the module
    returns ``M`` with the MINE bias-corrected gradient for the log term: its gradient is
    ``exp T(z_i, g_bar_i) / (B * EMA)`` per sample instead of ``exp T_i / sum_j exp T_j``,
    where EMA is a running mean (rate ``ema_alpha``, started at the first batch's value) of
    ``mean exp T(z, g_bar)``, updated on every call and kept for the estimator's lifetime.
    The value returned is the plain estimate; gradients reach both ``psi`` and ``z`` (hence
    the model that produced ``z``). The EMA is kept in log space, so large ``T`` cannot
    overflow.
    """

    def __init__(self, d_z: int, n_groups: int, hidden: int = 512, ema_alpha: float = 0.01):
        super().__init__()
        self.n_groups = int(n_groups)
        self.net = nn.Sequential(nn.Linear(d_z + self.n_groups, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.ema_alpha = float(ema_alpha)
        self.log_ema: torch.Tensor | None = None

    def scores(self, z: torch.Tensor, *groups: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        """``T(z, g)`` for each ``g`` in ``groups`` (one tensor when one is given).

        The first layer acts on ``[z, one_hot(g)]``, i.e. ``W_z z + W_g[:, g] + b``: the
        ``z`` part is computed once and shared by every group vector, so the joint and the
        marginal scores of a batch cost one pass over ``z``.
        """
        first, act, last = self.net
        d_z = first.in_features - self.n_groups
        h_z = F.linear(z, first.weight[:, :d_z], first.bias)
        w_g = first.weight[:, d_z:].t()  # (|G|, hidden): the one-hot's columns
        out = tuple(last(act(h_z + w_g[g.long()])).squeeze(1) for g in groups)
        return out[0] if len(out) == 1 else out

    def estimate(self, z: torch.Tensor, g: torch.Tensor, g_bar: torch.Tensor) -> torch.Tensor:
        """The MI estimate with plain autograd gradients and no EMA update (for measuring)."""
        joint, marginal = self.scores(z, g, g_bar)
        return joint.mean() - log_mean_exp(marginal)

    def forward(self, z: torch.Tensor, g: torch.Tensor, g_bar: torch.Tensor) -> torch.Tensor:
        joint, marginal = self.scores(z, g, g_bar)
        joint = joint.mean()
        lme = log_mean_exp(marginal)
        current = lme.detach()
        a = self.ema_alpha
        if self.log_ema is None or a >= 1.0:
            self.log_ema = current
        else:
            self.log_ema = torch.logaddexp(current + math.log(a), self.log_ema + math.log1p(-a))
        # value: log mean exp T; gradient: grad(mean exp T) / EMA
        ratio = torch.exp(lme - self.log_ema)
        log_term = current + (ratio - ratio.detach())
        return joint - log_term


def resolve_original_mode(option: str, prep) -> str:
    """The mode (``train`` or ``eval``) of the original model for ``z_o``. ``auto`` follows the
    official code per architecture: ``train`` for the image models (its ResNet is never put in
    eval mode), ``eval`` for the text models bert / tiny_bert (its BERT comes from
    ``from_pretrained``, which ends in ``eval()``: no dropout in ``z_o``); the prepared inputs
    tell them apart (token rows ``(3, L)`` feed only the text archs, ``grmu.models.build_model``)."""
    if option != "auto":
        return option
    return "eval" if len(prep.meta["input_shape"]) == 2 else "train"


def check_ablations(opts: dict, params: dict | None = None) -> None:
    """Refuse the three ablations at once (nothing would train); the ``check`` of the registration."""
    if opts["ablate_unlearn"] and opts["ablate_alignment"] and opts["ablate_retain"]:
        raise GrmuError(
            "methods.miu: ablate_unlearn, ablate_alignment and ablate_retain are all true; nothing would train"
        )


class MIU:
    """State of one MIU run: the two estimators, their optimizers and MIU's random stream.

    ``tune(epoch)`` is step 1 (the ``on_epoch_start`` hook), ``passes(epoch)`` gives steps 2
    and 3 to the shared training loop.
    """

    def __init__(self, ctx: UnlearnContext):
        self.ctx = ctx
        self.o = checked_options(get_method("miu"), ctx.options)
        check_ablations(self.o)
        self.n_groups = ctx.prep.n_groups
        self.dev = next(ctx.model.parameters()).device
        seed = int(ctx.seed)
        self.gen = torch.Generator().manual_seed(seed + _SAMPLING_STREAM)
        d_z = int(ctx.model.feat_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + _INIT_STREAM)
            self.mi_unlearning = MINE(d_z, self.n_groups, self.o["mine_hidden"], self.o["ema_alpha"])
            self.mi_original = MINE(d_z, self.n_groups, self.o["mine_hidden"], self.o["ema_alpha"])
        self.estimators = (self.mi_unlearning, self.mi_original)
        # the official code never puts its ResNet original in eval mode: z_o then uses batch
        # statistics and its BN running stats drift, so MIU takes its own copy
        self.original = ctx.original
        self.original_mode = resolve_original_mode(self.o["original_mode"], ctx.prep)
        if self.original_mode == "train":
            self.original = copy.deepcopy(ctx.original).train()
        # in epoch 0 the model still is the original, so tuning can reuse its features
        self.starts_as_original = all(
            torch.equal(a, b) for a, b in zip(ctx.model.state_dict().values(), ctx.original.state_dict().values())
        )
        self.optimizers = []
        for est in self.estimators:
            est.to(self.dev).requires_grad_(False)
            self.optimizers.append(torch.optim.SGD(est.parameters(), lr=self.o["mine_lr"], momentum=0.9))
        self.train_idx = torch.as_tensor(ctx.prep.indices("train"), dtype=torch.long)
        self.g_all = torch.as_tensor(ctx.prep.g).long()
        self.forget = ctx.forget_pass(self.forget_loss)
        self.remaining = ctx.remaining_pass(self.retain_loss)

    def mi(self, estimator: MINE, z: torch.Tensor, g: torch.Tensor, g_bar: torch.Tensor) -> torch.Tensor:
        """``estimator`` on ``z.float()`` outside the model's autocast, as the official code: a
        bf16 model's features are cast up and the estimator runs in float32 (its scores, EMA and
        gradients), while gradients still reach the model through the cast."""
        with torch.autocast(self.dev.type, enabled=False):
            return estimator(z.float(), g, g_bar)

    def marginal(self, g: torch.Tensor) -> torch.Tensor:
        """``g_bar``: groups paired with the batch's features as if drawn independently of them."""
        if self.o["marginal"] == "shuffle":
            return g[torch.randperm(len(g), generator=self.gen).to(g.device)]
        return torch.randint(0, self.n_groups, g.shape, generator=self.gen).to(g.device)

    def tune(self, epoch: int) -> None:
        """Step 1: maximise both MI estimates on random batches of the full train set."""
        steps = self.o["tune_steps_first"] if epoch == 0 else self.o["tune_steps"]
        if steps <= 0:
            return
        ctx, model = self.ctx, self.ctx.model
        was_training = model.training
        model.train(self.o["tune_mode"] == "train")
        for est in self.estimators:
            est.requires_grad_(True)
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen)]
        bs, pos = int(ctx.cfg["batch_size"]), 0
        augment = train_augmentation(ctx.prep) if self.o["tune_augment"] == "always" or ctx.cfg.get("augment") else None
        # in epoch 0 (eval mode) the model still is the original: its features serve both estimators
        shared = self.o["original_features"] == "unlearned" or (
            epoch == 0 and self.starts_as_original and not model.training
        )
        for _ in range(steps):
            if pos >= len(order):
                order, pos = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen)], 0
            b = order[pos : pos + bs]
            pos += bs
            x = to_input(ctx.prep.inputs[b], self.dev)
            if augment is not None and x.dim() == 4:
                x = augment(x, self.gen)
            g = self.g_all[b].to(self.dev)
            g_bar = self.marginal(g)
            with torch.no_grad():
                z_u = model.features(x)
                z_o = z_u if shared else self.original.features(x)
            loss = -(self.mi(self.mi_unlearning, z_u, g, g_bar) + self.mi(self.mi_original, z_o, g, g_bar))
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in self.optimizers:
                opt.step()
        for est in self.estimators:
            est.requires_grad_(False)
            for p in est.parameters():
                p.grad = None
        model.train(was_training)

    def forget_loss(self, model, x, y, g):
        """Step 2 (unlearning term, Eq. 3): ``+M_unl`` on a forget batch, minimised by the model."""
        return self.mi(self.mi_unlearning, model.features(x), g, self.marginal(g))

    def retain_loss(self, model, x, y, g):
        """Step 3: ``CE + lambda_mi * (M_unl(z_u) - stopgrad M_orig(z_o))^2`` (Eqs. 7 and 6)."""
        z = model.features(x)
        loss = z.new_zeros(())
        if not self.o["ablate_retain"]:
            loss = loss + F.cross_entropy(model.head(z), y)
        if not self.o["ablate_alignment"]:
            g_bar = self.marginal(g)
            m_unl = self.mi(self.mi_unlearning, z, g, g_bar)
            with torch.no_grad():
                m_orig = self.mi(self.mi_original, self.original.features(x), g, g_bar)
            loss = loss + self.o["lambda_mi"] * F.mse_loss(m_unl, m_orig)
        return loss

    def passes(self, epoch: int):
        out = []
        if epoch < self.o["forgetting_epochs"] and not self.o["ablate_unlearn"]:
            out.append(self.forget)
        if not (self.o["ablate_retain"] and self.o["ablate_alignment"]):
            out.append(self.remaining)
        return out


# the defaults run as the official code does (fact sheet §5.5, §8.4); the docstring of miu says
# what the other choices do
@register_method(
    "miu",
    check=check_ablations,
    options={
        "mine_lr": Number(0.01, "lr of both MINE estimators' SGD", low=0, low_open=True),
        "lambda_mi": Number(10.0, "weight of the MI calibration term (paper Eq. 6)", low=0),
        "forgetting_epochs": Int(5, "epochs with a forget pass (minimising the MI estimate)", low=0),
        "tune_steps_first": Int(101, "MINE updates in epoch 0 (the code; the paper: 100)", low=0),
        "tune_steps": Int(11, "MINE updates in each later epoch (the code; the paper: 10)", low=0),
        "ema_alpha": Number(0.01, "rate of the EMA in MINE's bias-corrected gradient", low=0, low_open=True, high=1),
        "mine_hidden": Int(512, "hidden width of the MINE network T_psi"),
        "marginal": Choice(
            "uniform", "g_bar: uniform over all groups (the code) | shuffle (the paper's text)", MARGINALS
        ),
        "original_features": Choice(
            "unlearned", "features mi_original is tuned on: unlearned (the code) | original", ORIGINAL_FEATURES
        ),
        "tune_mode": Choice(
            "train", "model mode while tuning: train (the code: BN stats absorb train batches) | eval", TUNE_MODES
        ),
        "tune_augment": Choice(
            "always", "augment tuning batches: always (the code) | unlearn (as unlearn.augment)", TUNE_AUGMENTS
        ),
        "original_mode": Choice(
            "auto",
            "mode of the original model for z_o: auto (the code: train for image archs, eval for bert) | train | eval",
            ORIGINAL_MODES,
        ),
        "ablate_unlearn": Bool(False, "drop the unlearning term (paper Table 4)"),
        "ablate_alignment": Bool(False, "drop the calibration term (paper Table 4)"),
        "ablate_retain": Bool(False, "drop the CE term (paper Table 4)"),
    },
)
def miu(ctx: UnlearnContext):
    """MIU: minimise feature-group mutual information on forget data, match the original's on remaining data.

    Two MINE estimators (see ``MINE``) of ``I(z; g)``, ``g`` = group (y, a): ``mi_unlearning``
    and ``mi_original``, each with its own SGD(lr=mine_lr, momentum 0.9), updated only in
    step 1. ``z = model.features(x)`` is the penultimate feature (input of the linear head).
    The estimators always run in float32 on ``z.float()``, outside a bf16 model's autocast
    (``model.precision``), as the official code runs them. Each epoch (paper Algorithm 1):

    1. tune: ``tune_steps_first`` updates in epoch 0, ``tune_steps`` later, each on a random
       batch (``unlearn.batch_size``, with the dataset's training augmentation: always, or as
       ``unlearn.augment``, by ``tune_augment``) of the FULL train set, forget set included;
       features under no_grad; each estimator maximises its MI estimate.
    2. forget pass, while ``epoch < forgetting_epochs`` and not ``ablate_unlearn``: loss
       ``+M_unl(z_u, g, g_bar)`` minimised w.r.t. the model (estimators frozen).
    3. remaining pass (REWEIGHT weights with ``reweight: true``; the paper's MIU uses
       REWEIGHT, so set it for "MIU + REWEIGHT"): loss ``CE(head(z_u), y)`` [unless
       ``ablate_retain``] ``+ lambda_mi * (M_unl(z_u, g, g_bar) - stopgrad M_orig(z_o, g,
       g_bar))^2`` [unless ``ablate_alignment``], ``z_o`` from the original model (no grad,
       in the mode ``original_mode`` says), one ``g_bar`` shared by both terms. With both
       ``ablate_retain`` and ``ablate_alignment`` the remaining pass is skipped.

    The defaults run as the official code does (fact sheet §5.5 and §8.4), which produced the
    paper's numbers and for which its recipes were tuned; where grmu's own reading of the paper
    differs, an option names it (``README``: MIU, official vs grmu's choices).

    Options (declared above with their defaults and ranges, ``grmu params methods.miu``):

    * ``lambda_mi``: the official HEAD configs use 10 for CelebA/Waterbirds and 1 for
      FairFace/MultiNLI; the paper (App. B.5) suggests 1 when in doubt.
    * ``forgetting_epochs``: 7 in most FairFace configs.
    * ``tune_steps_first`` / ``tune_steps``: as the official code does (an off-by-one of its
      loop); the paper states 100 and 10.
    * ``marginal``: how ``g_bar`` (the product-of-marginals sample) is drawn.
      ``"uniform"`` (default, the official code, fact sheet §8.4): uniform over all ``|G|``
      groups. ``"shuffle"`` (the paper's text): a random permutation of the batch's own
      groups. When a forget batch holds a single group (the paper's main single-group
      setting), shuffling gives ``g_bar == g``, so the unlearning term is
      ``mean T - log mean exp T <= 0`` and no longer measures any feature-group dependence;
      ``"uniform"`` keeps it informative. The remaining batches hold every group, so the
      calibration term behaves alike under both.
    * ``original_features``: features the ``mi_original`` estimator is tuned on in step 1.
      ``"unlearned"`` (default, the official code): the unlearned model's features, like
      ``mi_unlearning``. ``"original"`` (grmu's reading of the paper): the ORIGINAL model's
      features, so that it estimates the original model's MI. Either way, step 3 applies it
      to the original model's features. In epoch 0 with ``tune_mode: eval`` the model is
      still the original, so its features serve both estimators (one forward pass, same values).
    * ``tune_mode``: mode of the unlearned model while computing features in step 1.
      ``"train"`` (default, the official code): batch statistics, and the BN running
      statistics absorb the full-train batches, forget samples included. ``"eval"`` (grmu's
      choice): running statistics are used and left untouched, so the tuning (which sees
      forget samples) does not change the model.
    * ``tune_augment``: ``"always"`` (default, the official code: its tuning loader always
      has the train transform) or ``"unlearn"`` (as ``unlearn.augment``).
    * ``original_mode``: mode of the original model when it computes ``z_o``. ``"auto"``
      (default) follows the official code per architecture (``resolve_original_mode``):
      ``train`` for the image archs, ``eval`` for ``bert`` / ``tiny_bert``. ``"train"`` (the
      code's ResNet, never put in eval mode): batch statistics (and BERT's dropout), on a copy
      owned by MIU whose BN running stats drift; ``"eval"`` (the code's BERT, which
      ``from_pretrained`` leaves in eval mode; grmu's choice for the image archs): running
      statistics, no dropout, the original model untouched.
    * ``ablate_unlearn`` / ``ablate_alignment`` / ``ablate_retain`` (all false): drop the
      unlearning term (step 2), the calibration term, or the CE term (paper Table 4); not
      all three at once.

    Not reproduced from the official code: its adaptive gradient clipping, a no-op there (it
    is handed the original model, whose gradients are None, fact sheet §5.5).
    """
    state = MIU(ctx)
    return ctx.fit(state.passes, on_epoch_start=state.tune)
