"""Sharing with a team: a real round trip through a DVC remote, for a local folder and for an S3
bucket on a loopback moto server. Repo A (a shrunk temp copy of this repository) runs the
pipeline once and pushes; plain git clones of A pull, reproduce nothing and get byte-identical
checkpoints; an experiment goes from a clone back to A with `dvc exp push` and on to another
clone with `dvc exp pull`, and the pushed run-cache spares a third clone the unlearning run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
import pytest

from ._repo import copy_repo, dvc, ran_stages, repo_env, runner

pytestmark = pytest.mark.slow

UP_TO_DATE = "Data and pipelines are up to date"
BUCKET = "grmu-team"
# fake credentials only, so that a developer's real AWS settings never reach the loopback server
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "NO_PROXY": "127.0.0.1,localhost",
}
AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
)
OVER = {"ratios": [1.0]}  # SHRUNK with one ratio
EXP = "l1"
EXP_STAGES = {"check_params", "unlearn@1", "evaluate@unlearned", "aggregate"}


def env_for(path: Path) -> dict:
    env = repo_env(path, **AWS_ENV)
    for k in AWS_UNSET:
        env.pop(k, None)
    return env


def files_under(root: Path, sub: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / sub).rglob("*")) if p.is_file()}


def assert_same_models(a: Path, b: Path) -> None:
    fa, fb = files_under(a, "models"), files_under(b, "models")
    assert sorted(fa) == sorted(fb)
    assert sum(f.endswith(".pt") for f in fa) == 5  # PRETRAIN, 3 RETRAIN variants, unlearned
    for name, data in fa.items():
        assert fb[name] == data, f"{name} differs"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 (a free port) with one empty bucket; its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def origin(tmp_path_factory, s3_endpoint):
    """Repo A: the shrunk pipeline reproduced once; two remotes in .dvc/config, a local folder
    (team_local) and the S3 bucket (team_s3, the default); everything pushed with the run-cache
    to both; committed with its dvc.lock. Returns ``(path, run, base)``."""
    base = tmp_path_factory.mktemp("remote")
    path, _ = copy_repo(base / "A", OVER)
    run = runner(path, env_for(path))
    assert "prepare" in ran_stages(dvc(run, "repro").stdout)
    dvc(run, "remote", "add", "team_local", str(base / "store"))
    dvc(run, "remote", "add", "-d", "team_s3", f"s3://{BUCKET}/grmu")
    dvc(run, "remote", "modify", "team_s3", "endpointurl", s3_endpoint)
    for remote in ("team_local", "team_s3"):
        assert "files pushed" in dvc(run, "push", "--run-cache", "-r", remote).stdout
    run("git", "add", "-A")
    run("git", "commit", "-qm", "results and remotes")
    return path, run, base


@pytest.fixture
def clone(origin):
    """``clone(name, kind="s3")``: a plain `git clone` of A whose default remote is ``team_<kind>``
    (set in its .dvc/config.local when it is not the committed default); returns (path, run)."""
    a, run_a, base = origin

    def make(name: str, kind: str = "s3"):
        dst = base / name
        run_a("git", "clone", "-q", str(a), str(dst))
        run = runner(dst, env_for(dst))
        if kind != "s3":
            dvc(run, "remote", "default", "--local", f"team_{kind}")
        return dst, run

    return make


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_pull_in_a_clone_gives_every_output_and_nothing_to_run(origin, clone, kind):
    b, run_b = clone(f"B-{kind}", kind)
    assert "files fetched" in dvc(run_b, "pull").stdout
    assert UP_TO_DATE in dvc(run_b, "status").stdout
    assert ran_stages(dvc(run_b, "repro").stdout) == set()
    assert_same_models(origin[0], b)
    assert files_under(origin[0], "data/prepared") == files_under(b, "data/prepared")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_repro_pull_in_a_fresh_clone_downloads_and_runs_nothing(origin, clone, kind):
    c, run_c = clone(f"C-{kind}", kind)
    assert ran_stages(dvc(run_c, "repro", "--pull").stdout) == set()
    assert UP_TO_DATE in dvc(run_c, "status").stdout
    assert_same_models(origin[0], c)


def test_repro_pull_allow_missing_in_a_fresh_clone(clone):
    """A fresh clone reproduces with `--pull --allow-missing` without running a stage (the
    stage output folders are ignored at the root, so a clone has no stale folders for DVC to see as
    changed)."""
    _, run_c = clone("C-allow-missing")
    res = dvc(run_c, "repro", "--pull", "--allow-missing")
    assert ran_stages(res.stdout) == set(), res.stdout


@pytest.fixture(scope="module")
def pushed_exp(origin):
    """Clone B ran an l1_sparse experiment and pushed it with `dvc exp push` (the commit to its
    git remote A, the data and run-cache to the S3 remote); returns B's path."""
    a, run_a, base = origin
    b = base / "B-exp"
    run_a("git", "clone", "-q", str(a), str(b))
    run_b = runner(b, env_for(b))
    dvc(run_b, "pull")
    res = dvc(run_b, "exp", "run", "-n", EXP, "-S", "method=l1_sparse")
    assert ran_stages(res.stdout) == EXP_STAGES
    assert "Pushed experiment" in dvc(run_b, "exp", "push", "--run-cache", "origin", EXP).stdout
    return b


def test_exp_push_reaches_the_git_remote_and_the_report(origin, pushed_exp):
    a, run_a, base = origin
    refs = run_a("git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    assert [r.rsplit("/", 1)[1] for r in refs] == [EXP]
    assert f'"{EXP}"' in dvc(run_a, "exp", "show", "--json").stdout
    run_a(sys.executable, "-m", "grmu.cli", "report", "--out", str(base / "reports"))
    assert {"FINETUNE", "L1_SPARSE", "RETRAIN+REWEIGHT"} <= set(pd.read_csv(base / "reports/methods.csv")["model"])


def test_exp_pull_in_another_clone_gives_the_report_and_the_outputs(clone, pushed_exp):
    d, run_d = clone("D")
    dvc(run_d, "exp", "pull", "origin", EXP)
    run_d(sys.executable, "-m", "grmu.cli", "report", "--out", "reports")  # reads the pulled experiment
    assert "L1_SPARSE" in set(pd.read_csv(d / "reports/methods.csv")["model"])
    dvc(run_d, "exp", "apply", EXP)
    assert UP_TO_DATE in dvc(run_d, "status").stdout
    assert_same_models(pushed_exp, d)


def test_exp_run_pull_restores_the_unlearning_from_the_pushed_run_cache(clone, pushed_exp):
    e, run_e = clone("E")
    res = dvc(run_e, "exp", "run", "--pull", "-S", "method=l1_sparse")
    assert ran_stages(res.stdout) == {"aggregate"}  # its outputs live in git, not in the run-cache
    assert "Stage 'unlearn@1' is cached - skipping run" in res.stdout
    assert_same_models(pushed_exp, e)


def test_two_machines_split_the_stages_through_a_shared_remote(tmp_path):
    """Machine A runs the upstream and the RETRAIN stages, machine B (a clone of the same
    commit) the unlearning; each pushes outputs and run-cache to the shared remote, nothing is
    committed in between. B's `dvc repro --pull unlearn` restores A's upstream instead of running
    it, and A, finishing, restores B's unlearning and runs only the evaluations and aggregate."""
    a, run_a = copy_repo(tmp_path / "A", OVER)
    dvc(run_a, "remote", "add", "-d", "team", str(tmp_path / "store"))
    run_a("git", "commit", "-qam", "the team's remote")
    b = tmp_path / "B"
    run_a("git", "clone", "-q", str(a), str(b))
    run_b = runner(b)

    dvc(run_a, "repro", "forget_set", "pretrain")
    assert ran_stages(dvc(run_a, "repro", "--single-item", "--glob", "retrain@*").stdout) == {
        "retrain@erm-1",
        "retrain@reweight-1",
        "retrain@gdro-1",
    }
    dvc(run_a, "push", "--run-cache")

    # memorization@1 writes a plot with cache: false, so the run-cache cannot restore it: it runs
    # again (for group forget sets it computes nothing), and its unchanged output keeps forget_set
    # restored from A's run
    assert ran_stages(dvc(run_b, "repro", "--pull", "unlearn").stdout) == {"memorization@1", "unlearn@1"}
    dvc(run_b, "push", "--run-cache")

    finish = ran_stages(dvc(run_a, "repro", "--pull").stdout)
    assert finish == {"aggregate"} | {
        f"evaluate@{m}" for m in ("pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned")
    }
    assert UP_TO_DATE in dvc(run_a, "status").stdout
    for f in ("models/unlearned/1/1.0.pt", "models/unlearned/1/1.0.npz", "models/pretrain/1.pt"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
