"""Data-parallel training stages: PyTorch DDP under ``torchrun`` (params ``distributed``).

With ``distributed.processes: N > 1`` a PRETRAIN or RETRAIN stage script starts itself again
under ``torchrun`` with N processes (``launch``) and waits for them; each process takes one GPU
(``cuda:LOCAL_RANK``; NCCL) or, without GPUs, runs on the CPU (gloo). ``GRMU_TORCHRUN`` holds
extra torchrun options for several machines (``--nnodes 2 --node-rank 0 --rdzv-endpoint
host:port``; README "Several cores, GPUs or machines"); N is then the total over all machines.
A machine runs at most one process per GPU (CUDA) or per core it may use (CPU:
``os.sched_getaffinity``): more is refused in one line before torchrun starts (``check_capacity``).

What keeps an N-process run equal to the 1-process run of the same params (up to the order of
floating-point sums):

* every process draws the same batches (the loop's seeded generator) and takes a contiguous
  share of each **global** batch (``shard``); image augmentation is drawn for the whole global
  batch, so every sample gets the augmentation it gets in one process;
* each process's loss is multiplied by ``n_local * N / n_global`` (``fit``), so DDP's gradient
  mean is the gradient of the global batch's mean loss, also for an uneven last batch (a loss
  with a term shared by all samples, as a penalty, keeps its weight too);
* BatchNorm layers use the statistics of the global batch (PyTorch's ``SyncBatchNorm`` on
  CUDA, ``GlooSyncBatchNorm`` below on the CPU, where PyTorch's refuses to run); their running
  statistics are the same in every process;
* Group-DRO's group losses are summed over the processes (``all_sum``) before its weights move;
* the learning-rate schedule counts global batches; validation runs the same model in every
  process, so the best epoch is the same everywhere; process 0 alone writes outputs and logs.

Models with dropout (BERT) draw a different mask per process: their runs are equivalent in
distribution, not equal. Unlearning and memorization stages run in one process.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from contextlib import contextmanager

import torch
from torch import nn

from grmu import GrmuError

EXTRA_ARGS_ENV = "GRMU_TORCHRUN"


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if active() else 1


def is_main() -> bool:
    """True in the process that writes outputs (rank 0, or the only process)."""
    return rank() == 0


def backend_for(name: str) -> str:
    """The process-group backend of ``distributed.backend`` (validated in ``grmu.config``)."""
    if name == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if name == "nccl" and not torch.cuda.is_available():
        raise GrmuError("distributed.backend 'nccl' needs CUDA GPUs and none is visible; use gloo or auto")
    return name


def machines() -> int:
    """The number of machines of a run: ``--nnodes`` of ``GRMU_TORCHRUN`` (1 without it)."""
    extra = shlex.split(os.environ.get(EXTRA_ARGS_ENV, ""))
    nnodes = 1
    for i, arg in enumerate(extra):
        if arg.startswith("--nnodes"):
            value = arg.split("=", 1)[1] if "=" in arg else (extra[i + 1] if i + 1 < len(extra) else "")
            if not value.isdigit() or int(value) < 1:
                raise GrmuError(
                    f"{EXTRA_ARGS_ENV}: --nnodes must be a fixed positive number of machines, got {value!r}"
                )
            nnodes = int(value)
    return nnodes


def cpu_cores() -> int:
    """The cores this process may run on (its affinity: a container's or ``taskset``'s share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def check_capacity(processes: int, nnodes: int = 1) -> None:
    """Refuse with one line ``processes`` (over ``nnodes`` machines) that this machine cannot
    run: each process takes a GPU of its own on CUDA, a core of its own on the CPU."""
    from grmu.runtime import device

    local = processes // nnodes
    if device().type == "cuda":
        have, unit, where = torch.cuda.device_count(), "GPU", "CUDA GPUs"
    else:
        have, unit, where = cpu_cores(), "core", "CPU cores (os.sched_getaffinity) and no GPU in use"
    if local > have:
        spread = f" ({processes} over {nnodes} machines)" if nnodes > 1 else ""
        raise GrmuError(
            f"distributed.processes {processes} asks this machine for {local} processes{spread}, but it has "
            f"{have} {where}; use at most {have * nnodes} (one process per {unit}) or more machines "
            f"({EXTRA_ARGS_ENV}=--nnodes ...)"
        )


def torchrun_command(processes: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``argv`` (a script and its arguments) in ``processes``
    processes: on this machine alone, or with ``GRMU_TORCHRUN``'s options across machines."""
    extra = shlex.split(os.environ.get(EXTRA_ARGS_ENV, ""))
    nnodes = machines()
    if processes % nnodes:
        raise GrmuError(
            f"distributed.processes {processes} does not divide among {nnodes} machines "
            f"({EXTRA_ARGS_ENV}); use a multiple of {nnodes}"
        )
    where = extra if extra else ["--standalone"]
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={processes // nnodes}", *argv]


@contextmanager
def processes(cfg: dict):
    """The body of a training stage script, run in ``cfg['processes']`` processes.

    One process: the block runs here. Several, outside torchrun: the script is started again
    under torchrun, this process waits and exits with its code (the block does not run here).
    Inside torchrun: the process group is set up around the block."""
    n, backend = int(cfg["processes"]), backend_for(cfg["backend"])
    if n == 1:
        yield
        return
    if "LOCAL_RANK" not in os.environ:
        cmd = torchrun_command(n, [sys.argv[0], *sys.argv[1:]])
        check_capacity(n, machines())  # before any process starts
        print(f"distributed: {n} processes ({backend}): {shlex.join(cmd[1:])}", file=sys.stderr, flush=True)
        code = subprocess.call(cmd)
        if code:
            raise GrmuError(f"the {n} training processes failed (torchrun exit code {code}); their messages are above")
        sys.exit(0)
    if int(os.environ["WORLD_SIZE"]) != n:
        raise GrmuError(
            f"distributed.processes is {n} but torchrun started {os.environ['WORLD_SIZE']} processes; "
            f"start it with {n} in all (--nnodes x --nproc-per-node)"
        )
    if torch.cuda.is_available() and int(os.environ["LOCAL_RANK"]) < torch.cuda.device_count():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # "cuda" is this process's own GPU from here on
    torch.distributed.init_process_group(backend)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def shard(n: int) -> slice:
    """This process's contiguous share of a global batch of ``n`` samples (sizes differ by at
    most one; a process gets none when ``n`` is below the number of processes)."""
    r, w = rank(), world_size()
    return slice(r * n // w, (r + 1) * n // w)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the processes (no gradient); ``t`` itself in one process."""
    if not active():
        return t
    t = t.detach().clone()
    torch.distributed.all_reduce(t)
    return t


class _AllSum(torch.autograd.Function):
    """Sum over the processes, with the gradient: each process's input gets the sum of the
    output's gradients (every process's loss depends on every process's input)."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone()
        torch.distributed.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all processes, for CPU training (gloo): the sums
    behind the mean and the (biased) variance are summed over the processes with their gradient (``_AllSum``), so the
    gradient flows through the statistics as in one process; running statistics take the
    unbiased variance of the global batch, as ``BatchNorm`` does. Evaluation: plain BatchNorm."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        sums = _AllSum.apply(torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.size(1)])]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        var = _AllSum.apply(((x - mean.view(shape)) ** 2).sum(dims)) / count
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * count / (count - 1), alpha=factor)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def _swap_batchnorm(model: nn.Module, make) -> None:
    """Replace each BatchNorm layer of ``model`` by ``make(name, layer)``, a new layer sharing
    its parameters and buffers (optimizers holding the parameters stay valid)."""
    for name, bn in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]:
        new = make(name, bn)(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var, new.num_batches_tracked = (
            bn.running_mean,
            bn.running_var,
            bn.num_batches_tracked,
        )
        new.train(bn.training)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, new)


def buffer_sync_option() -> str:
    """The name of DDP's switch for syncing buffers before each forward: ``forward_sync_buffers``
    where PyTorch has it (it deprecates ``broadcast_buffers``), else ``broadcast_buffers`` (the
    older releases that grmu's ``torch>=2.4`` admits)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"


@contextmanager
def data_parallel(model: nn.Module):
    """Yield the module that training runs forward through: ``model`` itself in one process;
    under torchrun, ``model`` with global-batch BatchNorm layers, wrapped in DDP. ``model``'s
    layers are its own kinds again (holding the same tensors) when the block ends."""
    if not active():
        yield model
        return
    from torch.nn.parallel import DistributedDataParallel

    cuda = next(model.parameters()).is_cuda
    kinds = {n: type(m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    _swap_batchnorm(model, lambda name, bn: nn.SyncBatchNorm if cuda else GlooSyncBatchNorm)
    # BatchNorm buffers agree already: no buffer sync before each forward
    ddp = DistributedDataParallel(
        model, device_ids=[torch.cuda.current_device()] if cuda else None, **{buffer_sync_option(): False}
    )
    ddp.precision = getattr(model, "precision", "fp32")  # autocast reads it (grmu.inference)
    try:
        yield ddp
    finally:
        _swap_batchnorm(model, lambda name, bn: kinds[name])


def loss_scale(n_local: int, n_global: int) -> float:
    """The factor of a process's mean loss over its ``n_local`` samples such that DDP's mean
    of the gradients is the gradient of the mean loss over all ``n_global`` samples."""
    return n_local * world_size() / n_global
