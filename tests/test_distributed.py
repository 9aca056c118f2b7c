"""Data-parallel training stages (grmu.distributed): a stage run in 2 gloo processes under
torchrun equals the 1-process run of the same global batch, on one machine and as two
"machines" (two torchrun agents meeting at a rendezvous on this host)."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from grmu import GrmuError
from grmu.config import validate
from grmu.distributed import loss_scale, shard, torchrun_command
from grmu.models import load_checkpoint, new_model
from grmu.prepared import load_prepared
from grmu.splits import load_forget, remaining_indices
from grmu.stages.forget_set import run as forget_set
from tests.conftest import ROOT, small_params

TOL = 2e-5  # largest weight difference allowed between 1 and 2 processes (float sum order)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    """The stage processes' environment: CPU processes on gloo, also on a machine with GPUs (one
    GPU refuses two processes; NCCL's own path needs a GPU each, bench/gpu.sh's machine has one)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **extra}
    env.pop("LOCAL_RANK", None)
    return env


def _retrain_cmd(params_file, prepared_dir, forget_dir, variant, out_dir) -> list[str]:
    """The retrain stage of seed 0 (every ratio of the params file: its forget set in
    ``forget_dir``, its checkpoint in ``out_dir``)."""
    return [
        sys.executable,
        str(ROOT / "stages/retrain.py"),
        "--params",
        str(params_file),
        "--prepared",
        str(prepared_dir),
        "--variant",
        variant,
        "--forget",
        str(forget_dir),
        "--seed",
        "0",
        "--out",
        str(out_dir),
    ]


def _weights(path, prep):
    model = new_model(small_params()["model"], prep, load_weights=False)
    info = load_checkpoint(path, model)
    return {k: v.double() for k, v in model.state_dict().items()}, info


def _setup(tmp_path, prepared_dir, ratio, remainder, **train):
    """params files for 1 and 2 processes, with a batch size that leaves ``remainder`` samples
    in the last batch of the remaining set (1: the first process gets none of them). A small lr:
    at the default one these tiny runs amplify float rounding (1 vs 2 threads differ by 1e-2)."""
    prep = load_prepared(prepared_dir)
    forget = tmp_path / "forget" / f"{ratio}.json"
    forget_set(small_params(), prepared_dir, ratio, 0, forget)
    n = len(remaining_indices(prep, load_forget(forget, prep)["forget"]))
    bs = next(b for b in range(60, 400) if n % b == remainder)
    files = {}
    for procs in (1, 2):
        p = small_params(
            ratios=[ratio],
            train={"batch_size": bs, "epochs": 2, "lr": 0.002, **train},
            distributed={"processes": procs, "backend": "gloo"},
        )
        files[procs] = tmp_path / f"params{procs}.yaml"
        files[procs].write_text(yaml.safe_dump(p))
    return prep, forget.parent, files


def _assert_same_run(a, b, prep):
    wa, ia = _weights(a, prep)
    wb, ib = _weights(b, prep)
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert diff < TOL, f"2-process weights differ from 1-process ones by {diff:g}"
    assert any("running_var" in k and not torch.equal(wa[k], torch.ones_like(wa[k])) for k in wa)
    # a validation sample on the decision boundary may flip: at most 2 of 1,000
    assert [h["val_acc"] for h in ib["history"]] == pytest.approx([h["val_acc"] for h in ia["history"]], abs=0.21)
    assert [h.get("best") for h in ia["history"]] == [h.get("best") for h in ib["history"]]
    for ha, hb in zip(ia["history"], ib["history"]):
        assert hb["loss_train"] == pytest.approx(ha["loss_train"], rel=1e-4)
    assert (ia["run"]["processes"], ib["run"]["processes"]) == (1, 2)


@pytest.mark.slow  # torchrun and 2 + 1 stage processes
@pytest.mark.parametrize(
    "variant,ratio,remainder,train",
    [
        # last batch of 1: one process trains on nothing; shift augmentation drawn per global batch
        ("erm", 0.1, 1, {"augment": True}),
        # odd batches (48 + 49, last 37 + 38); Group-DRO's weights from the global batch; no augmentation
        ("gdro", 0.5, 75, {"augment": False}),
    ],
)
def test_two_processes_equal_one(tmp_path, prepared_dir, variant, ratio, remainder, train):
    prep, forget, files = _setup(tmp_path, prepared_dir, ratio, remainder, **train)
    out = {n: tmp_path / f"out{n}" for n in (1, 2)}
    for n in (1, 2):
        r = subprocess.run(
            _retrain_cmd(files[n], prepared_dir, forget, variant, out[n]),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-3000:]
    assert "distributed: 2 processes (gloo)" in r.stderr
    assert sorted(p.name for p in out[2].iterdir()) == [f"{ratio}.npz", f"{ratio}.pt"]
    _assert_same_run(out[1] / f"{ratio}.pt", out[2] / f"{ratio}.pt", prep)


@pytest.mark.slow
def test_two_machines_meet_at_a_rendezvous(tmp_path, prepared_dir):
    """Two torchrun agents of one process each (``GRMU_TORCHRUN``: --nnodes 2, torchrun's static
    rendezvous), as two machines would run them, train together; rank 0, on machine 0, writes
    the one checkpoint."""
    prep, forget, files = _setup(tmp_path, prepared_dir, 0.5, 75, augment=True)
    port = _free_port()
    nodes = []
    for node in (0, 1):
        extra = f"--nnodes 2 --node-rank {node} --master-addr 127.0.0.1 --master-port {port}"
        nodes.append(
            subprocess.Popen(
                _retrain_cmd(files[2], prepared_dir, forget, "erm", tmp_path / f"n{node}"),
                env=_env(GRMU_TORCHRUN=extra),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [p.communicate(timeout=600) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert (tmp_path / "n0/0.5.pt").exists() and not (tmp_path / "n1").exists()  # machine 0 holds rank 0
    ref = tmp_path / "one"
    r = subprocess.run(
        _retrain_cmd(files[1], prepared_dir, forget, "erm", ref),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_run(ref / "0.5.pt", tmp_path / "n0/0.5.pt", prep)


def test_shards_cover_each_batch_once(monkeypatch):
    import grmu.distributed as d

    for world in (2, 3, 8):
        monkeypatch.setattr(d, "world_size", lambda w=world: w)
        for n in (1, 5, 7, 32):
            parts = []
            for r in range(world):
                monkeypatch.setattr(d, "rank", lambda r=r: r)
                parts.append(list(range(n))[shard(n)])
            assert sum(parts, []) == list(range(n))  # contiguous, in order, each sample once
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
            # the loss factors make DDP's gradient mean the global batch's mean
            assert sum(loss_scale(len(p), n) for p in parts) / world == pytest.approx(1.0)


def test_torchrun_command(monkeypatch):
    monkeypatch.delenv("GRMU_TORCHRUN", raising=False)
    cmd = torchrun_command(4, ["stages/pretrain.py", "--seed", "0"])
    assert cmd[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=4",
        "stages/pretrain.py",
        "--seed",
        "0",
    ]
    monkeypatch.setenv("GRMU_TORCHRUN", "--nnodes=2 --node-rank 1 --rdzv-endpoint h:29500")
    cmd = torchrun_command(4, ["s.py"])
    assert cmd[3:] == ["--nnodes=2", "--node-rank", "1", "--rdzv-endpoint", "h:29500", "--nproc-per-node=2", "s.py"]
    monkeypatch.setenv("GRMU_TORCHRUN", "--nnodes 3")
    with pytest.raises(GrmuError, match="processes 4 does not divide among 3 machines"):
        torchrun_command(4, ["s.py"])
    monkeypatch.setenv("GRMU_TORCHRUN", "--nnodes 1:2")
    with pytest.raises(GrmuError, match="fixed positive number of machines, got '1:2'"):
        torchrun_command(4, ["s.py"])


@pytest.mark.parametrize(
    "over,message",
    [
        ({"processes": 0}, "distributed.processes must be a positive integer, got 0"),
        ({"processes": 1.5}, "distributed.processes must be a positive integer, got 1.5"),
        ({"backend": "mpi"}, "distributed.backend 'mpi' is unknown; valid: auto, nccl, gloo"),
    ],
)
def test_bad_distributed_params(over, message):
    p = small_params(distributed=over)
    with pytest.raises(GrmuError, match=message.replace(".", r"\.")):
        validate(p)


@pytest.mark.slow
def test_world_size_must_match_the_param(tmp_path, prepared_dir):
    """A torchrun started by hand with another number of processes than the params say stops
    with one line naming both numbers, before any training."""
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(small_params(distributed={"processes": 3, "backend": "gloo"})))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=1",
        str(ROOT / "stages/pretrain.py"),
        "--params",
        str(p),
        "--prepared",
        str(prepared_dir),
        "--seed",
        "0",
        "--out",
        str(tmp_path / "m.pt"),
    ]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "error: distributed.processes is 3 but torchrun started 1 processes" in r.stderr
    assert not (tmp_path / "m.pt").exists()


@pytest.fixture
def one_process_group():
    """A gloo process group of this process alone: the DDP code paths, in-process."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


def test_fit_under_a_process_group_wraps_and_unwraps_the_model(prep, one_process_group):
    """Under DDP fit trains through global-batch BatchNorm layers and hands back the model with its
    own BatchNorm layers (same tensors); one process gives the plain run's weights; passes that
    DDP cannot split are refused with one line."""
    from grmu.train import Pass, fit

    cfg = {
        "epochs": 1,
        "batch_size": 100,
        "lr": 0.002,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "warmup_epochs": 0,
        "schedule": "const",
    }
    tr = prep.indices("train")[:250]  # batches of 100, 100, 50
    runs = []
    for parallel in (True, False):
        torch.manual_seed(0)
        model = new_model(small_params()["model"], prep)
        bn = model.body[1]
        if not parallel:
            torch.distributed.destroy_process_group()
        model, _ = fit(model, prep, lambda e: [Pass("train", tr, batch_size=100)], cfg, seed=0)
        if not parallel:
            torch.distributed.init_process_group(
                "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
            )
        assert type(model.body[1]) is torch.nn.BatchNorm2d and model.body[1].weight is bn.weight
        runs.append(model.state_dict())
    assert all(torch.allclose(runs[0][k].double(), runs[1][k].double(), atol=1e-6) for k in runs[0])
    assert not torch.equal(runs[0]["body.1.running_var"], torch.ones(8))
    with pytest.raises(GrmuError, match="pass 'f' uses partner batches.*use distributed.processes 1"):
        fit(model, prep, lambda e: [Pass("f", tr, partner=tr)], cfg, seed=0)


class NewDDP(torch.nn.Module):
    """DDP's signature in PyTorch 2.14, as far as grmu calls it."""

    def __init__(self, module, device_ids=None, forward_sync_buffers=None):
        super().__init__()
        self.module, self.sync = module, {"forward_sync_buffers": forward_sync_buffers}


class OldDDP(torch.nn.Module):
    """DDP's signature before ``forward_sync_buffers`` (torch 2.11, say)."""

    def __init__(self, module, device_ids=None, broadcast_buffers=True):
        super().__init__()
        self.module, self.sync = module, {"broadcast_buffers": broadcast_buffers}


@pytest.mark.parametrize("ddp,option", [(NewDDP, "forward_sync_buffers"), (OldDDP, "broadcast_buffers")])
def test_ddp_gets_no_buffer_sync_under_the_name_its_torch_knows(prep, one_process_group, monkeypatch, ddp, option):
    """PyTorch 2.14 names the switch ``forward_sync_buffers`` (deprecating ``broadcast_buffers``);
    the older releases that ``torch>=2.4`` admits know only ``broadcast_buffers`` and refuse the
    new name (seen on torch 2.11: a TypeError). Either way DDP is told not to sync buffers."""
    import torch.nn.parallel

    from grmu.distributed import data_parallel

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", ddp)
    model = new_model(small_params()["model"], prep)
    with data_parallel(model) as wrapped:
        assert wrapped.module is model and wrapped.sync == {option: False}
