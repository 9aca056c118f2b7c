"""Warm stage start-up: run a stage script in a fork of a process that has already imported
torch and the other heavy libraries, instead of importing them again in every stage.

A cold stage spends seconds importing torch, torch's compiler config (which
``torch.use_deterministic_algorithms`` loads), dvclive, scikit-learn and pandas before it
computes anything; the embedded default's ~100 stages spent most of a cold ``dvc repro`` there.
Each ``stages/*.py`` script calls ``hand_over()`` first. It connects to a *warm server*
(started on first use, one per Python environment, stopping itself after ``GRMU_WARM_IDLE``
seconds, default 60, without work) over a Unix socket that only this user can open, and passes
it its argv, working directory, environment, umask, niceness, CPU affinity and its stdin/stdout/
stderr file descriptors. The server forks; the child takes all of these over, forgets every
``grmu`` module (so the stage always runs the code on disk) and runs the script as
``__main__``; the client waits, forwards SIGINT/SIGTERM/SIGHUP to the child and exits with the
child's exit code. A child whose client dies is terminated. The server is keyed by everything
that an import can depend on: the interpreter, ``sys.path``, the modification times of its
folders (a package installed or removed) and the environment variables that Python, OpenMP,
BLAS and torch read at import, so a different venv, PYTHONPATH or thread setting gets its own
server.

The stage computes exactly what a cold process computes (each stage seeds every generator it
uses; tests/test_warm.py checks byte-identical outputs). The server runs no tensor operation,
so no torch/OpenMP thread pool exists when it forks; the OpenBLAS pools that numpy and scipy
start at import stop at a fork and restart in the child (their own ``pthread_atfork`` handlers,
as with ``multiprocessing``'s fork start). ``GRMU_WARM=0`` runs every stage in
its own process as before; when the server cannot be reached or started, the stage runs cold.

    python -m grmu.warm status | stop     # this environment's server
"""
from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time

# what the server imports once; each stage's child finds them in sys.modules
PRELOAD = ("numpy", "pandas", "yaml", "tqdm.auto", "torch", "torch.nn.functional", "torch._inductor.config",
           "torchvision.models", "dvclive", "sklearn.ensemble", "sklearn.svm")
# environment variables read while those modules are imported (the rest reaches the child as is)
ENV_KEYS = ("PYTHON", "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "TORCH", "PYTORCH_", "CUDA_", "NCCL_", "LD_")
IDLE = 60.0
CONNECT_WAIT = 120.0  # how long a client waits for a new server to finish its imports
_HEADER = struct.Struct("!I")


def enabled() -> bool:
    """Warm start-up is on (``GRMU_WARM`` is not 0), this is not already a warm child, and the
    interpreter runs with no command-line options that a server started without them would lack;
    off in the processes that torchrun starts (``grmu.distributed``): torchrun watches them itself."""
    plain = not (sys.warnoptions or sys._xoptions or sys.flags.optimize or sys.flags.isolated or sys.flags.no_site
                 or sys.flags.dev_mode or sys.flags.safe_path or sys.flags.ignore_environment)
    return (os.environ.get("GRMU_WARM", "1") != "0" and "GRMU_WARM_CHILD" not in os.environ and plain
            and "TORCHELASTIC_RUN_ID" not in os.environ
            and sys.platform.startswith("linux"))


def _key() -> str:
    """Identity of this Python environment as far as imports are concerned."""
    paths = [p for p in sys.path[1:] if p]
    stamps = []
    for p in paths:
        try:
            stamps.append(os.stat(p).st_mtime_ns)
        except OSError:
            stamps.append(0)
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_KEYS))
    with open(__file__, "rb") as f:
        me = f.read()
    raw = json.dumps([sys.executable, sys.version, paths, stamps, env, PRELOAD]).encode() + me
    return hashlib.sha256(raw).hexdigest()[:20]


def _socket_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = os.path.join(base, f"grmu-warm-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(path):
        raise OSError(f"{path} is not a private folder of this user")
    return path


def socket_path() -> str:
    return os.path.join(_socket_dir(), _key() + ".sock")


def _send(sock: socket.socket, obj, fds=()) -> None:
    data = json.dumps(obj).encode()
    msg = _HEADER.pack(len(data)) + data
    if fds:
        sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(msg)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def _recv(sock: socket.socket, with_fds: int = 0):
    """One message (and up to ``with_fds`` file descriptors sent with its first bytes)."""
    fds = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, with_fds)
        if len(head) < _HEADER.size:
            head += _recv_exact(sock, _HEADER.size - len(head))
    else:
        head = _recv_exact(sock, _HEADER.size)
    (n,) = _HEADER.unpack(head)
    return json.loads(_recv_exact(sock, n)), fds


def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s
    except OSError:
        s.close()
        return None


def _start_server(path: str) -> socket.socket | None:
    """Start a server for ``path`` (unless another client just did) and connect to it."""
    import fcntl
    import subprocess

    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn = _connect(path)
        if conn is not None:
            return conn
        with open(path + ".log", "ab") as log:  # the server runs in its private folder, with this environment
            server = subprocess.Popen([sys.executable, "-m", "grmu.warm", "serve", path], stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log, cwd=os.path.dirname(path), start_new_session=True,
                                      close_fds=True)
        deadline = time.monotonic() + CONNECT_WAIT
        while time.monotonic() < deadline and server.poll() is None:  # a server that failed: run cold now
            conn = _connect(path)
            if conn is not None:
                return conn
            time.sleep(0.05)
    return None


def _is_program(script: str) -> bool:
    """``script`` is the program this interpreter was started to run (``python script args``),
    not a file run from inside another program (``runpy`` in a test, a notebook)."""
    try:
        return sys.orig_argv[-len(sys.argv):] == sys.argv and os.path.samefile(sys.argv[0], script)
    except (OSError, AttributeError, ValueError):
        return False


def hand_over() -> None:
    """Run the calling stage script in a warm child and exit with its exit code; returns (and
    the script runs here, cold) when warm start-up is off, when the script is not this
    process's program (run from inside another one, which must go on) or when no server can
    be reached."""
    if not enabled() or not _is_program(sys._getframe(1).f_globals.get("__file__", "")):
        return
    try:
        path = socket_path()
        conn = _connect(path) or _start_server(path)
    except OSError:
        conn = None
    if conn is None:
        return
    request = {"argv": sys.argv, "path": sys.path, "cwd": os.getcwd(), "env": dict(os.environ),
               "umask": os.umask(0o022), "nice": os.nice(0), "affinity": sorted(os.sched_getaffinity(0))}
    os.umask(request["umask"])
    try:
        _send(conn, request, fds=(0, 1, 2))
        pid = _recv(conn)[0]["pid"]
    except (OSError, EOFError, ValueError):
        return  # the server went away before taking the job: run it here

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        code = _recv(conn)[0]["exit"]
    except (OSError, EOFError, ValueError):
        code = 1  # the child died without reporting (killed)
    sys.stdout.flush()
    os._exit(code)


# ---------------------------------------------------------------- server side


def _child(conn: socket.socket) -> None:
    """In the forked child: take the client's process state over and run its script."""
    import atexit
    import io
    import runpy
    import threading
    import traceback

    code = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        req, fds = _recv(conn, with_fds=3)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ["GRMU_WARM_CHILD"] = "1"
        os.umask(req["umask"])
        os.nice(max(req["nice"] - os.nice(0), 0))
        os.sched_setaffinity(0, req["affinity"])
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      line_buffering=True, write_through=unbuffered)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True, write_through=True)
        sys.argv = list(req["argv"])
        sys.path[:] = [os.path.dirname(os.path.abspath(sys.argv[0]))] + list(req["path"][1:])
        for name in [m for m in sys.modules if m == "grmu" or m.startswith("grmu.")]:
            del sys.modules[name]  # the stage imports grmu from disk, as a cold process would
        _send(conn, {"pid": os.getpid()})

        def watch():  # the client is gone (killed): stop too
            try:
                while conn.recv(1):
                    pass
            except OSError:
                pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True).start()
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 130 if isinstance(sys.exc_info()[1], KeyboardInterrupt) else 1
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            _send(conn, {"exit": code})
        except OSError:
            pass
        os._exit(code)


def serve(path: str, idle: float | None = None) -> None:
    """Import PRELOAD, listen on ``path`` and fork a child per request until idle."""
    import importlib

    idle = float(os.environ.get("GRMU_WARM_IDLE", IDLE)) if idle is None else idle
    # should anything ask torch whether CUDA is there, ask NVML, never the CUDA driver: a process
    # that initialised the driver cannot hand it to its forks (checked below for torch's own state)
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as e:  # the stage that needs it will say so itself
            print(f"grmu.warm: not preloaded: {name}: {e}", file=sys.stderr)
    import torch

    if torch.cuda.is_initialized():  # a fork of a CUDA process cannot use CUDA
        raise SystemExit("grmu.warm: CUDA was initialised while importing; not serving")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(64)
    server.settimeout(1.0)
    inode = os.stat(path).st_ino
    children: set[int] = set()
    last = time.monotonic()
    while True:
        for pid in list(children):
            if os.waitpid(pid, os.WNOHANG)[0]:
                children.discard(pid)
                last = time.monotonic()
        try:
            if os.stat(path).st_ino != inode:
                break  # replaced by another server
        except FileNotFoundError:
            break
        if not children and time.monotonic() - last > idle:
            break
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        conn.setblocking(True)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            server.close()
            _child(conn)
        conn.close()
        children.add(pid)
        last = time.monotonic()
    server.close()
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv else "status"
    if cmd == "serve":
        serve(argv[1])
        return
    path = socket_path()
    conn = _connect(path)
    if cmd == "status":
        print(f"{path}: {'running' if conn else 'not running'}")
    elif cmd == "stop":
        if conn is not None:
            os.unlink(path)  # the server sees its socket gone and exits within a second
        print(f"{path}: stopped" if conn else f"{path}: not running")
    else:
        raise SystemExit(f"unknown command '{cmd}'; valid: status, stop")


if __name__ == "__main__":
    main()
