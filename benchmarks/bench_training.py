#!/usr/bin/env python
"""Benchmark of tripletlit training throughput against a reference-style loop and implicit's BPR.

One run prints a side-by-side table (median rows/s, runs, ratio to ours, target, peak memory,
notes) and a one-line summary, and saves every figure to ``benchmarks/out/training.json``.

Variants, all on the same EvalRS-scale training fold (d = 128, batch 512):

- ``ours``: the product's path - ``TripletLitModule`` + ``NeighbourRefresh`` under a Lightning
  ``Trainer`` on CPU, the fused lazy Adam (what ``resolve_optimizer`` picks there: gradients
  and SparseAdam's update in one numba kernel, ``train.fused_batches`` batches per Lightning
  step; ``--optimizer`` measures another), all three loss terms,
  popularity weights on, ``torch.set_num_threads(train.cpu_threads = 1)``, no progress bar, no
  logger, no checkpointing; ``limit_train_batches`` batches of one epoch. Throughput = rows /
  (fit wall - pool refresh); the refresh (``neighbour_pools`` on the initial vectors, timed
  inside the callback) is reported on its own with the RSS it adds (sampled every ms).
- ``reference``: written here the way the paper's public code did it (``method.md`` section 3):
  a torch ``Dataset`` whose ``__getitem__(i)`` draws s_n, u_p, u_n, s_a for ONE row in Python
  (lists of each user's tracks / each track's listeners / each user's pool, ``random.choice``),
  ``DataLoader(batch_size=512, num_workers=4, shuffle=True)``, dense ``nn.Embedding`` tables,
  dense ``torch.optim.Adam``, the same ``composite_loss``. Timed over ``--ref-batches`` batches
  after a warm-up. Its pools (same definition as ours) are built untimed with ours; the
  reference's own pool build - a dense users x users cosine matrix, then a Python loop per user
  (``np.argpartition`` for the 5 nearest, set differences) - is timed in ``reference-pools``.
- ``bpr``: ``implicit.cpu.bpr.BayesianPersonalizedRanking(factors=128)`` on the same user x
  track CSR; samples/s = nnz * iterations / fit time, with 1 and 2 threads.

Every measured run is its own child process (``--child STAGE``): peak memory is that child's
``ru_maxrss`` from ``os.wait4``; the parent imports neither torch nor numpy so it does not lift
the children's floor (Linux hands a child the parent's RSS high-water mark at ``exec``). The
reference's DataLoader workers are separate processes: their summed PSS is sampled too. Before
each run the parent waits (polls every 20 s) while another ``benchmarks/bench_*`` runs.

Usage::

    python benchmarks/bench_training.py            # the evalrs preset fold (~6.9M rows): ~15 min
    python benchmarks/bench_training.py --quick    # the medium preset fold (~1.2M rows): < 2 min
    python benchmarks/bench_training.py --fresh    # rebuild the cached fold parquet
    python benchmarks/bench_training.py --profile-steps 300   # + cProfile of our training steps

The first full run generates the evalrs preset (~90 s, ~4 GB) and caches the fold's training
rows (and the users' gender/country, for the weights) as parquet under ``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from _harness import cpu_ticks, machine_info, parent_map, process_tree  # benchmarks/_harness.py

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DEFAULT_JSON = OUT / "training.json"
GB = 1e9

RATIO_REFERENCE_TARGET = 20.0  # ours / reference rows/s
RATIO_BPR_TARGET = 0.4  # ours / BPR (1 thread) samples/s
REFRESH_TARGET_S = 10.0  # at the full (evalrs fold) scale
POLL_S = 20.0


# =============================================================================================
# Child side: heavy imports only here.
# =============================================================================================
class RssSampler:
    """Peak RSS of this process (and optionally its children's summed PSS) sampled in a thread."""

    def __init__(self, interval: float = 0.001, children: bool = False):
        self.interval, self.children = interval, children
        self.start_rss = self.peak_rss = 0
        self.peak_tree_pss = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _tree_pss(self) -> int:
        import psutil

        total = 0
        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        last_tree = 0.0
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._rss())
            if self.children and time.perf_counter() - last_tree > 0.5:
                self.peak_tree_pss = max(self.peak_tree_pss, self._tree_pss())
                last_tree = time.perf_counter()
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self.start_rss = self.peak_rss = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._rss())

    @property
    def added(self) -> int:
        return self.peak_rss - self.start_rss


def _load_fold(spec: dict):
    """The cached training rows and users of the fold, their index and row weights."""
    import pandas as pd

    from tripletlit.sampling import Interactions
    from tripletlit.weights import row_weights

    train = pd.read_parquet(spec["fold"])
    users = pd.read_parquet(spec["users"])
    index = Interactions.from_rows(train["user_id"].to_numpy(), train["track_id"].to_numpy())
    weights = row_weights(train, users) if spec.get("weights", True) else None
    return train, index, weights


def _initial_tables(index, dim: int, seed: int):
    """The uniform initial tables fit_fold uses without word2vec (seeded as fold 0)."""
    import numpy as np

    from tripletlit.init import uniform_init

    rng = np.random.default_rng([seed, 0])
    return uniform_init(index.n_users, dim, rng), uniform_init(index.n_tracks, dim, rng)


def child_baseline(spec: dict) -> dict:
    """Imports only (torch, lightning, tripletlit): the floor of every other child's peak."""
    import lightning
    import numpy as np
    import torch

    try:
        import implicit

        implicit_version = implicit.__version__
    except ImportError:
        implicit_version = None
    return {
        "wall_s": 0.0,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "lightning": lightning.__version__, "numpy": np.__version__,
                     "implicit": implicit_version},  # fmt: skip
        "torch_default_threads": torch.get_num_threads(),
    }


def child_warm(spec: dict) -> dict:
    """Compile the fused kernel once on a toy input: numba caches it on disk, so the timed runs
    of ours measure training, not a one-off compilation (a fresh checkout pays it once)."""
    import numpy as np
    import torch

    from tripletlit.fused import FusedAdam
    from tripletlit.sampling import Triplets

    t0 = time.perf_counter()
    tables = [torch.nn.Parameter(torch.zeros(8, spec["dim"])) for _ in range(2)]
    rng = np.random.default_rng(0)
    FusedAdam(tables).train(Triplets(*(rng.integers(0, 8, 16) for _ in range(6))), np.ones(16, np.float32), 8,
                            1.0, 1.0, (0.5, 0.5, 0.5))  # fmt: skip
    return {"wall_s": time.perf_counter() - t0}


def child_prep(spec: dict) -> dict:
    """Generate the preset, split fold 0 with the EvalRS defaults, cache train + users as parquet."""
    from tripletlit.data.folds import FoldConfig, make_fold
    from tripletlit.data.synthetic import generate

    t0 = time.perf_counter()
    dataset, _ = generate(spec["preset"], seed=spec["seed"])
    t1 = time.perf_counter()
    fold = make_fold(dataset.events, FoldConfig(), 0)
    t2 = time.perf_counter()
    for key, frame in (("fold", fold.train), ("users", dataset.users[["user_id", "gender", "country"]])):
        tmp = Path(spec[key] + ".tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, spec[key])
    return {"wall_s": t2 - t0, "generate_s": t1 - t0, "split_s": t2 - t1, "events": len(dataset.events),
            "train_rows": len(fold.train), "test_users": len(fold.test)}  # fmt: skip


def child_ours(spec: dict) -> dict:
    """The product's training path on the cached fold; rows/s over ``batches`` batches.
    ``hugepages: false`` in the spec turns off tripletlit's huge-page advice (the A/B of it)."""
    if spec.get("hugepages") is False:
        os.environ["TRIPLETLIT_HUGEPAGES"] = "0"  # read by tripletlit.memory at the first table
    import lightning as L
    import numpy as np
    import torch

    from tripletlit.callbacks import NeighbourRefresh
    from tripletlit.config import Config
    from tripletlit.experiment import cpu_threads, quiet_lightning, resolve_optimizer
    from tripletlit.model import TripletMF
    from tripletlit.module import TripletLitModule

    config = Config()
    config.model.embedding_dim = spec["dim"]
    config.train.batch_size = spec["batch_size"]
    config.train.accelerator = "cpu"
    config.train.cpu_threads = spec["threads"]
    if spec.get("optimizer"):
        config.train.optimizer = spec["optimizer"]
    t_load = time.perf_counter()
    train, index, weights = _load_fold(spec)
    user_init, track_init = _initial_tables(index, spec["dim"], config.seed)
    load_s = time.perf_counter() - t_load
    optimizer = resolve_optimizer(config)
    model = TripletMF(index.n_users, index.n_tracks, spec["dim"], sparse=optimizer == "sparse_adam",
                      user_init=user_init, track_init=track_init)  # fmt: skip
    loss = config.loss
    module = TripletLitModule(model, index, weights, loss.lambda_user, loss.lambda_song,
                              (loss.margin_user_song, loss.margin_user_user, loss.margin_song_song),
                              config.train.lr, config.train.batch_size, optimizer, config.seed,
                              fused_batches=config.train.fused_batches)  # fmt: skip
    # a Lightning step is fused_batches batches of batch_size rows on the fused path
    per_step = module.fused_batches

    profiling = bool(spec.get("profile"))
    if profiling:
        import cProfile

        step_profile, refresh_profile = cProfile.Profile(), cProfile.Profile()

    class TimedRefresh(NeighbourRefresh):
        """The product's callback, with the wall time and added RSS of each refresh recorded."""

        timings: list = []

        def refresh(self, pl_module) -> dict:
            with RssSampler() as rss:
                t0 = time.perf_counter()
                if profiling:
                    stats = refresh_profile.runcall(super().refresh, pl_module)
                else:
                    stats = super().refresh(pl_module)
                wall = time.perf_counter() - t0
            self.timings.append({"wall_s": wall, "added_bytes": rss.added, "threads": torch.get_num_threads(),
                                 **stats})  # fmt: skip
            return stats

    class StepClock(L.Callback):
        """Steady-state rate: wall from the start of batch ``warm`` to the end of the last one."""

        def __init__(self, warm: int):
            self.warm, self.t0, self.t1, self.batches = warm, None, None, 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0 and profiling:  # the steps only: not the refresh, not the set-up
                step_profile.enable()
            if batch_idx == self.warm:
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            if profiling:
                step_profile.disable()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches = batch_idx + 1
            self.t1 = time.perf_counter()

    s = config.sampling
    refresh = TimedRefresh(s.neighbours, s.direction, s.extra_neighbours, s.block_size)
    steps = max(2, -(-spec["batches"] // per_step))
    clock = StepClock(min(50, steps // 5))
    with quiet_lightning():
        trainer = L.Trainer(max_epochs=1, limit_train_batches=steps, accelerator="cpu", devices=1,
                            callbacks=[refresh, clock], logger=False, enable_progress_bar=False,
                            enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                            use_distributed_sampler=False)  # fmt: skip
    with quiet_lightning(), cpu_threads(config.train.cpu_threads, True):
        threads_in_fit = torch.get_num_threads()
        t0 = time.perf_counter()
        trainer.fit(module)
        fit_s = time.perf_counter() - t0
    refresh_s = sum(t["wall_s"] for t in refresh.timings)
    batches = clock.batches * per_step
    rows = batches * spec["batch_size"]
    out = {
        "wall_s": fit_s - refresh_s,
        "rows": rows,
        "batches": batches,
        "rows_per_s": rows / (fit_s - refresh_s),
        "fit_s": fit_s,
        "refresh_s": refresh_s,
        "refresh": refresh.timings,
        "steady_rows_per_s": (clock.batches - clock.warm) * per_step * spec["batch_size"] / (clock.t1 - clock.t0),
        "optimizer": optimizer,
        "threads_in_fit": threads_in_fit,
        "load_s": load_s,
        "n_rows": len(train),
        "n_users": index.n_users,
        "n_tracks": index.n_tracks,
        "final_loss": float(trainer.callback_metrics.get("train/loss_step", float("nan"))),
        "weights_mean": float(np.mean(weights)),
        "refresh_block_bytes": s.block_size * index.n_users * 4,
    }
    if profiling:
        out["profile_steps"] = _top(step_profile, spec["profile"])
        out["profile_refresh"] = _top(refresh_profile, spec["profile"].replace(".pstats", "-refresh.pstats"))
    return out


def _top(profile, path: str, n: int = 12) -> list[dict]:
    """Dump a cProfile profile to ``path``; its top ``n`` functions by own time."""
    import pstats

    profile.dump_stats(path)
    stats = pstats.Stats(path).stats
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{"function": f"{Path(f).name}:{line}({name})", "ncalls": nc, "tottime_s": tt, "cumtime_s": ct}
            for (f, line, name), (cc, nc, tt, ct, _) in top]  # fmt: skip


def child_refresh_alt(spec: dict) -> dict:
    """What the pool refresh costs, piece by piece: the neighbour search alone with 5 or 55
    neighbours (5 + the 50 fallback ones topk always computes) and the whole refresh, at 1 and
    2 torch threads (the product refreshes inside ``fit``, i.e. at ``train.cpu_threads`` = 1)."""
    import torch

    from tripletlit.sampling import nearest_users, neighbour_pools

    train, index, _ = _load_fold({**spec, "weights": False})
    user_init, _ = _initial_tables(index, spec["dim"], 0)
    vectors = torch.from_numpy(user_init)
    out = {"n_users": index.n_users}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for label, fn in (("search_5", lambda: nearest_users(vectors, 5)),
                          ("search_55", lambda: nearest_users(vectors, 55)),
                          ("refresh", lambda: neighbour_pools(index, vectors))):  # fmt: skip
            times = []
            for _ in range(spec["repeat"]):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[f"{label}_{threads}t_s"] = statistics.median(times)
    out["wall_s"] = out["refresh_1t_s"]
    return out


def child_ref_pools(spec: dict) -> dict:
    """The reference's pools: a dense cosine matrix, then a Python loop per user.

    With ``slice_users`` < n_users only that many rows of the matrix (slice x all users) are
    built and looped over; the full-scale time is extrapolated linearly in the rows.
    """
    import numpy as np
    import torch

    from tripletlit.sampling import neighbour_pools

    train, index, _ = _load_fold({**spec, "weights": False})
    user_init, _ = _initial_tables(index, spec["dim"], 0)
    n_users = index.n_users
    rows = min(spec["slice_users"] or n_users, n_users)
    user_sets = [set(index.user_tracks[index.user_indptr[u] : index.user_indptr[u + 1]].tolist())
                 for u in range(n_users)]  # fmt: skip
    with RssSampler() as rss:
        t0 = time.perf_counter()
        unit = user_init / np.linalg.norm(user_init, axis=1, keepdims=True)
        sim = unit[:rows] @ unit.T  # (rows, n_users) float32: 3.5 GB at 29.7K x 29.7K
        t1 = time.perf_counter()
        pools, chosen = [], []
        for u in range(rows):
            sim[u, u] = -np.inf
            near = np.argpartition(-sim[u], 5)[:5]
            near = near[np.argsort(-sim[u, near])]
            pool, who = [], -1
            for v in near:
                diff = user_sets[v] - user_sets[u]
                if diff:
                    pool, who = list(diff), int(v)
                    break
            pools.append(pool)  # the reference crashed on an empty pool: counted below
            chosen.append(who)
        t2 = time.perf_counter()
    matrix_bytes = sim.nbytes
    del sim
    # untimed cross-check: the same pools as ours (neighbour_pools) on the same vectors
    ours = neighbour_pools(index, torch.from_numpy(user_init))
    same = sum(
        chosen[u] == ours.neighbour[u]
        and sorted(pools[u]) == ours.tracks[ours.indptr[u] : ours.indptr[u + 1]].tolist()
        for u in range(rows) if chosen[u] >= 0
    )  # fmt: skip
    with_pool = sum(c >= 0 for c in chosen)
    scale = n_users / rows
    return {
        "wall_s": (t2 - t0) * scale,
        "measured_s": t2 - t0,
        "matrix_s": t1 - t0,
        "loop_s": t2 - t1,
        "rows": rows,
        "n_users": n_users,
        "scale": scale,
        "matrix_bytes": matrix_bytes,
        "full_matrix_bytes": n_users * n_users * 4,
        "added_bytes": rss.added,
        "empty_pools": rows - with_pool,
        "same_as_ours": same / max(with_pool, 1),
        "numpy_threads_note": "numpy matmul with its default BLAS threads",
    }


def child_ref_train(spec: dict) -> dict:
    """The reference-style training loop (see the module docstring)."""
    import random

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from tripletlit.losses import composite_loss
    from tripletlit.sampling import neighbour_pools

    train, index, weights = _load_fold(spec)
    user_init, track_init = _initial_tables(index, spec["dim"], 0)
    t_setup = time.perf_counter()
    pools = neighbour_pools(index, torch.from_numpy(user_init))  # untimed: same pools as the reference's
    users_list = index.row_user.tolist()
    tracks_list = index.row_track.tolist()
    weight_list = weights.tolist()
    user_tracks = [index.user_tracks[index.user_indptr[u] : index.user_indptr[u + 1]].tolist()
                   for u in range(index.n_users)]  # fmt: skip
    track_users = [index.track_users[index.track_indptr[t] : index.track_indptr[t + 1]].tolist()
                   for t in range(index.n_tracks)]  # fmt: skip
    user_pools = [pools.tracks[pools.indptr[u] : pools.indptr[u + 1]].tolist() or None
                  for u in range(index.n_users)]  # fmt: skip
    n_tracks = index.n_tracks
    setup_s = time.perf_counter() - t_setup

    class TripletDataset(Dataset):
        """One training row -> (u_a, s_p, s_n, u_p, u_n, s_a, w), drawn in Python."""

        def __len__(self):
            return len(users_list)

        def __getitem__(self, i):
            u, sp = users_list[i], tracks_list[i]
            pool = user_pools[u]
            if pool is not None:
                sn = random.choice(pool)
            else:  # the reference crashed here; uniform unheard track instead
                heard = set(user_tracks[u])
                sn = random.randrange(n_tracks)
                while sn in heard:
                    sn = random.randrange(n_tracks)
            up = random.choice(track_users[sp])
            un = random.choice(track_users[sn])
            sa = random.choice(user_tracks[u])
            return u, sp, sn, up, un, sa, weight_list[i]

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    users = nn.Embedding(index.n_users, spec["dim"])
    tracks = nn.Embedding(index.n_tracks, spec["dim"])
    with torch.no_grad():
        users.weight.copy_(torch.from_numpy(user_init))
        tracks.weight.copy_(torch.from_numpy(track_init))
    optimizer = torch.optim.Adam([*users.parameters(), *tracks.parameters()], lr=1e-3)
    loader = DataLoader(TripletDataset(), batch_size=spec["batch_size"], num_workers=spec["workers"], shuffle=True)
    warm, timed = spec["warmup"], spec["batches"]
    times = []
    with RssSampler(interval=0.01, children=True) as rss:
        t_start = time.perf_counter()
        for step, (u, sp, sn, up, un, sa, w) in enumerate(loader):
            if step == warm:
                t0 = time.perf_counter()
            total, _ = composite_loss(users(u), tracks(sp), tracks(sn), users(up), users(un), tracks(sa),
                                      weight=w.float())  # fmt: skip
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            times.append(time.perf_counter())
            if step + 1 == warm + timed:
                break
        t1 = time.perf_counter()
        del loader  # workers shut down
    rows = timed * spec["batch_size"]
    return {
        "wall_s": t1 - t0,
        "rows": rows,
        "rows_per_s": rows / (t1 - t0),
        "warmup_s": t0 - t_start,
        "setup_s": setup_s,
        "final_loss": float(total),
        "threads": torch.get_num_threads(),
        "workers": spec["workers"],
        "tree_pss_bytes": rss.peak_tree_pss,
        "n_rows": len(train),
    }


def child_bpr(spec: dict) -> dict:
    """implicit's CPU BPR on the user x track CSR of the fold."""
    import numpy as np
    import scipy.sparse as sp
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    train, index, _ = _load_fold({**spec, "weights": False})
    matrix = sp.csr_matrix((np.ones(len(index.row_user), dtype=np.float32), (index.row_user, index.row_track)),
                           shape=(index.n_users, index.n_tracks))  # fmt: skip
    model = BayesianPersonalizedRanking(factors=spec["dim"], iterations=spec["iterations"],
                                        num_threads=spec["threads"], random_state=0)  # fmt: skip
    t0 = time.perf_counter()
    model.fit(matrix, show_progress=False)
    wall = time.perf_counter() - t0
    samples = matrix.nnz * spec["iterations"]
    return {"wall_s": wall, "rows": samples, "rows_per_s": samples / wall, "nnz": int(matrix.nnz),
            "iterations": spec["iterations"], "threads": spec["threads"]}  # fmt: skip


CHILDREN = {
    "baseline": child_baseline,
    "warm": child_warm,
    "prep": child_prep,
    "ours": child_ours,
    "profile": child_ours,
    "ours-4k": child_ours,
    "refresh-alt": child_refresh_alt,
    "ref-pools": child_ref_pools,
    "reference": child_ref_train,
    "bpr-1": child_bpr,
    "bpr-2": child_bpr,
}


# =============================================================================================
# Parent side: stdlib (+ rich for the table) only.
# =============================================================================================
class StageFailed(RuntimeError):
    pass


def other_benchmarks(idle_probe_s: float = 3.0) -> list[str]:
    """Command lines of ``benchmarks/bench_*`` processes outside this run's own tree that are
    busy. A benchmark whose whole process tree stays idle for ``idle_probe_s`` is itself
    waiting (perhaps for this one): it is not counted, or two polite benchmarks would deadlock."""
    found = subprocess.run(["pgrep", "-af", "benchmarks/bench_"], capture_output=True, text=True).stdout
    parents = parent_map()
    mine, pid = set(), os.getpid()
    while pid > 1:  # ancestors (e.g. the shell that started this run)
        mine.add(pid)
        pid = parents.get(pid, 1)
    children: dict[int, list[int]] = {}
    for p, pp in parents.items():
        children.setdefault(pp, []).append(p)
    mine |= process_tree(os.getpid(), children)
    others = {}
    for line in found.splitlines():
        pid_s, _, cmd = line.partition(" ")
        if pid_s.isdigit() and int(pid_s) not in mine:
            others[int(pid_s)] = cmd[:120]
    if not others:
        return []
    trees = {p: process_tree(p, children) for p in others}
    before = {p: cpu_ticks(t) for p, t in trees.items()}
    time.sleep(idle_probe_s)
    hz = os.sysconf("SC_CLK_TCK")
    busy = [p for p, t in trees.items() if (cpu_ticks(t) - before[p]) / hz > 0.05 * idle_probe_s]
    return [f"{p} {others[p]}" for p in busy]


def wait_quiet(log, max_wait: float) -> float:
    """Wait while another benchmark runs (poll every 20 s); returns the seconds waited."""
    t0 = time.perf_counter()
    while True:
        others = other_benchmarks()
        if not others:
            return time.perf_counter() - t0
        waited = time.perf_counter() - t0
        if waited > max_wait:
            log(f"  still busy after {waited:.0f} s, measuring anyway: {others[0]}")
            return -waited
        log(f"  waiting: another benchmark runs ({others[0]})")
        time.sleep(POLL_S)


class ContentionWatch:
    """Records the other benchmarks busy while a child runs (checked every few seconds)."""

    def __init__(self):
        self.seen: set[str] = set()
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(other_benchmarks(idle_probe_s=2.0))
            self._stop.wait(3.0)

    def __enter__(self) -> ContentionWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_child(stage: str, spec: dict, workdir: Path) -> dict:
    """Run one stage in a fresh interpreter; its result plus peak RSS (wait4) and CPU time."""
    result = workdir / f".result-{stage}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--spec", json.dumps(spec),
           "--result", str(result)]  # fmt: skip
    started = time.perf_counter()
    load = os.getloadavg()[0]
    with ContentionWatch() as watch:
        proc = subprocess.Popen(cmd)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not result.exists():
        raise StageFailed(f"stage {stage} exited with {code}")
    out = json.loads(result.read_text())
    result.unlink()
    out["peak_bytes"] = usage.ru_maxrss * 1024
    out["process_s"] = time.perf_counter() - started
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    out["load_avg_before"] = load
    out["contended_by"] = sorted(watch.seen)
    return out


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def summarise(runs: list[dict], key: str = "rows_per_s") -> dict:
    values = [r[key] for r in runs]
    median_run = sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]
    return {"n": len(runs), key: statistics.median(values), "min": min(values), "max": max(values),
            "peak_bytes": max(r["peak_bytes"] for r in runs), "median_run": median_run, "runs": runs}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="the medium preset fold, fewer batches (< 2 min)")
    p.add_argument("--preset", help="synthetic preset of the fold (default evalrs; medium with --quick)")
    p.add_argument("--fresh", action="store_true", help="regenerate the cached fold parquet")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic preset")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--optimizer", default="auto", choices=("auto", "fused", "sparse_adam", "adam"),
                   help="train.optimizer of ours (default auto: the fused lazy Adam on one CPU)")
    p.add_argument("--batches", type=int, help="our batches of --batch-size rows per run (default 12000; 1200 with --quick)")
    p.add_argument("--repeat", type=int, help="runs of ours (default 3; 2 with --quick)")
    p.add_argument("--ref-batches", type=int, help="timed reference batches (default 100; 40 with --quick)")
    p.add_argument("--ref-warmup", type=int, help="reference warm-up batches (default 20; 10 with --quick)")
    p.add_argument("--ref-repeat", type=int, help="reference runs (default 3; 1 with --quick)")
    p.add_argument("--ref-workers", type=int, default=4, help="reference DataLoader workers (default 4)")
    p.add_argument("--ref-threads", type=int, default=1,
                   help="torch threads of the reference's training process (default 1, like ours: faster for it "
                        "here than 2, which make its small ops contend with the 4 workers)")  # fmt: skip
    p.add_argument("--ref-pool-users", type=int, default=0,
                   help="rows of the reference's dense similarity matrix (0 = all users if memory allows, "
                        "else 10,000)")  # fmt: skip
    p.add_argument("--bpr-iterations", type=int, help="BPR iterations (default 2; 1 with --quick)")
    p.add_argument("--bpr-repeat", type=int, help="BPR runs per thread count (default 3; 1 with --quick)")
    p.add_argument("--small-pages-repeat", type=int,
                   help="runs of ours without the huge-page advice, side by side (default 2; 0 with --quick)")
    p.add_argument("--profile-steps", type=int,
                   help="cProfile our training for that many steps (default 300; 0 = skip; 0 with --quick)")
    p.add_argument("--retries", type=int, default=2,
                   help="re-runs of a measurement during which another benchmark was busy (default 2)")
    p.add_argument("--max-wait", type=float, default=1800.0,
                   help="seconds to wait for other benchmarks before measuring anyway")
    p.add_argument("--json", default=str(DEFAULT_JSON))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def fmt_gb(x: float | None) -> str:
    return "—" if x is None else f"{x / GB:.2f} GB"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        out = CHILDREN[args.child](json.loads(args.spec))
        Path(args.result).write_text(json.dumps(out))
        return 0

    from rich.console import Console
    from rich.table import Table

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    console = Console() if sys.stdout.isatty() else Console(width=180)
    err = Console(stderr=True, width=200)
    started = time.perf_counter()

    def log(msg: str) -> None:
        err.print(f"[dim]{time.perf_counter() - started:6.0f} s[/]  {msg}", highlight=False)

    quick = args.quick
    preset = args.preset or ("medium" if quick else "evalrs")
    batches = args.batches or (1200 if quick else 12000)
    repeat = args.repeat or (2 if quick else 3)
    ref_batches = args.ref_batches or (40 if quick else 100)
    ref_warmup = args.ref_warmup or (10 if quick else 20)
    ref_repeat = args.ref_repeat or (1 if quick else 3)
    bpr_iterations = args.bpr_iterations or (1 if quick else 2)
    bpr_repeat = args.bpr_repeat or (1 if quick else 3)
    profile_steps = args.profile_steps if args.profile_steps is not None else (0 if quick else 300)
    small_pages_repeat = args.small_pages_repeat if args.small_pages_repeat is not None else (0 if quick else 2)

    OUT.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    fold_path = OUT / f"training-fold-{preset}-s{args.seed}.parquet"
    users_path = OUT / f"training-users-{preset}-s{args.seed}.parquet"
    workdir = Path(tempfile.mkdtemp(prefix="tripletlit-bench-training-"))
    data = {"fold": str(fold_path), "users": str(users_path), "dim": args.dim, "batch_size": args.batch_size}
    stages: dict[str, dict] = {}
    waits: dict[str, float] = {}

    def stage(name: str, spec: dict, n: int, label: str, key: str = "rows_per_s", timed: bool = True) -> dict:
        runs = []
        for i in range(n):
            for attempt in range(1 + (args.retries if timed else 0)):
                if timed:
                    waits[f"{name}#{i}.{attempt}"] = wait_quiet(log, args.max_wait)
                log(f"{label}" + (f"  ({i + 1}/{n})" if n > 1 else "") + (f"  retry {attempt}" if attempt else ""))
                r = run_child(name, {**data, **spec}, workdir)
                log(f"   -> {r.get(key, 0):,.1f} {'rows/s' if key == 'rows_per_s' else 's'}, "
                    f"peak {fmt_gb(r['peak_bytes'])}")  # fmt: skip
                if not (timed and r["contended_by"]):
                    break
                log(f"   another benchmark ran meanwhile ({r['contended_by'][0]}): discarded")
            runs.append(r)
        stages[name] = summarise(runs, key)
        return stages[name]

    try:
        base = stage("baseline", {}, 1, "baseline: imports only", key="wall_s", timed=False)
        floor = base["peak_bytes"]
        stage("warm", {}, 1, "warm: compile the fused kernel once (numba's disk cache)", key="wall_s", timed=False)
        if args.fresh or not (fold_path.exists() and users_path.exists()):
            stage("prep", {"preset": preset, "seed": args.seed}, 1,
                  f"prep: generate {preset}, split fold 0, cache parquet", key="wall_s", timed=False)  # fmt: skip
        prep = stages.get("prep", {}).get("median_run")

        stage("ours", {"batches": batches, "threads": 1, "optimizer": args.optimizer}, repeat,
              f"ours: Lightning + {args.optimizer} optimizer, {batches} batches of {args.batch_size}")
        ours = stages["ours"]
        n_users = ours["median_run"]["n_users"]
        if small_pages_repeat:
            stage("ours-4k", {"batches": batches, "threads": 1, "optimizer": args.optimizer, "hugepages": False},
                  small_pages_repeat, "ours with 4 KB pages (TRIPLETLIT_HUGEPAGES=0): what the huge-page advice gives")  # fmt: skip

        stage("refresh-alt", {"repeat": 1 if quick else 2}, 1,
              "pool refresh, piece by piece, at 1 and 2 threads", key="wall_s")
        pool_users = args.ref_pool_users
        if not pool_users:
            full_bytes = n_users * n_users * 4
            pool_users = n_users if mem_available() > 2.5 * full_bytes + 2 * GB else min(10_000, n_users)
        stage("ref-pools", {"slice_users": pool_users}, 1,
              f"reference pools: dense {pool_users:,} x {n_users:,} cosine + per-user Python loop", key="wall_s")
        stage("reference", {"batches": ref_batches, "warmup": ref_warmup, "workers": args.ref_workers,
                            "threads": args.ref_threads}, ref_repeat,
              f"reference: per-row Python Dataset, {args.ref_workers} workers, dense Adam, "
              f"{ref_warmup} + {ref_batches} batches")  # fmt: skip
        for t in (1, 2):
            stage(f"bpr-{t}", {"threads": t, "iterations": bpr_iterations}, bpr_repeat,
                  f"implicit BPR, {t} thread(s), {bpr_iterations} iteration(s)")
        if profile_steps:
            profile_file = json_path.parent / "training-profile.pstats"
            stage("profile", {"batches": profile_steps, "threads": 1, "profile": str(profile_file)}, 1,
                  f"cProfile of ours, {profile_steps} steps")
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)

    # ---------------------------------------------------------------- results ---
    o = ours["rows_per_s"]
    ref = stages["reference"]["rows_per_s"]
    b1, b2 = stages["bpr-1"]["rows_per_s"], stages["bpr-2"]["rows_per_s"]
    refresh_runs = [t for r in ours["runs"] for t in r["refresh"]]
    refresh_s = statistics.median(t["wall_s"] for t in refresh_runs)
    refresh_added = max(t["added_bytes"] for t in refresh_runs)
    pools = stages["ref-pools"]["median_run"]
    om = ours["median_run"]
    scale_note = "" if preset == "evalrs" else f" (target is for the evalrs fold; this is {preset})"
    ratios = {"ours_over_reference": o / ref, "ours_over_bpr_1thread": o / b1, "ours_over_bpr_2threads": o / b2,
              "refresh_speedup_over_reference_pools": pools["wall_s"] / refresh_s}  # fmt: skip
    if "ours-4k" in stages:
        ratios["hugepages_over_4k_pages"] = o / stages["ours-4k"]["rows_per_s"]
    targets = {
        "ours_over_reference": {"target": RATIO_REFERENCE_TARGET, "met": ratios["ours_over_reference"] >= RATIO_REFERENCE_TARGET},
        "ours_over_bpr_1thread": {"target": RATIO_BPR_TARGET, "met": ratios["ours_over_bpr_1thread"] >= RATIO_BPR_TARGET},
        "refresh_s": {"target": REFRESH_TARGET_S, "met": refresh_s <= REFRESH_TARGET_S},
    }  # fmt: skip

    table = Table(title=f"Training throughput — {preset} fold 0: {om['n_rows']:,} rows, {om['n_users']:,} users, "
                        f"{om['n_tracks']:,} tracks; d = {args.dim}, batch {args.batch_size}")  # fmt: skip
    for col in ("variant", "rows/s (median)", "runs", "ours / this", "target", "peak RSS", "notes"):
        table.add_column(col, justify="left" if col in ("variant", "notes") else "right")

    def mark(ok: bool) -> str:
        return "[green]met[/]" if ok else "[red]NOT met[/]"

    table.add_row(f"ours (Lightning, {om['optimizer']} optimizer, 1 thread)", fmt_rate(o), str(ours["n"]), "1.0x", "—",
                  fmt_gb(ours["peak_bytes"]),
                  f"{om['batches']} batches; steady {fmt_rate(om['steady_rows_per_s'])} rows/s; "
                  f"range {fmt_rate(ours['min'])}-{fmt_rate(ours['max'])}")  # fmt: skip
    if "ours-4k" in stages:
        small = stages["ours-4k"]
        table.add_row("  ours with 4 KB pages (no huge-page advice)", fmt_rate(small["rows_per_s"]), str(small["n"]),
                      f"{o / small['rows_per_s']:.2f}x", "—", fmt_gb(small["peak_bytes"]),
                      f"TRIPLETLIT_HUGEPAGES=0; steady {fmt_rate(small['median_run']['steady_rows_per_s'])} rows/s")  # fmt: skip
    table.add_row("  pool refresh (neighbour_pools)", f"{refresh_s:.2f} s", str(len(refresh_runs)), "—",
                  f"<= {REFRESH_TARGET_S:.0f} s {mark(targets['refresh_s']['met'])}", f"+{fmt_gb(refresh_added)}",
                  f"added RSS while refreshing (block {fmt_gb(om['refresh_block_bytes'])}); "
                  f"{pools['wall_s'] / refresh_s:,.1f}x faster than the reference's pools")  # fmt: skip
    rm = stages["reference"]["median_run"]
    table.add_row("reference (Python Dataset, 4 workers, dense Adam)", fmt_rate(ref), str(stages["reference"]["n"]),
                  f"{o / ref:,.1f}x", f">= {RATIO_REFERENCE_TARGET:.0f}x {mark(targets['ours_over_reference']['met'])}",
                  fmt_gb(stages["reference"]["peak_bytes"]),
                  f"{rm['threads']} torch thread(s); workers+main PSS {fmt_gb(rm['tree_pss_bytes'])}; "
                  f"list setup {rm['setup_s']:.0f} s")  # fmt: skip
    table.add_row("  reference pools (dense U x U + Python loop)", f"{pools['wall_s']:.1f} s", "1", "—", "—",
                  fmt_gb(stages["ref-pools"]["peak_bytes"]),
                  (f"matrix {pools['matrix_s']:.1f} s + loop {pools['loop_s']:.1f} s; "
                   + ("" if pools["scale"] == 1 else f"{pools['rows']:,} of {pools['n_users']:,} rows, x{pools['scale']:.2f}; ")
                   + f"matrix {fmt_gb(pools['matrix_bytes'])}; same pools as ours {pools['same_as_ours']:.1%}"))  # fmt: skip
    for t, b in ((1, b1), (2, b2)):
        s = stages[f"bpr-{t}"]
        table.add_row(f"implicit BPR, {t} thread(s)", fmt_rate(b), str(s["n"]), f"{o / b:.2f}x",
                      f">= {RATIO_BPR_TARGET}x {mark(targets['ours_over_bpr_1thread']['met'])}" if t == 1 else "—",
                      fmt_gb(s["peak_bytes"]),
                      f"samples/s = nnz x {s['median_run']['iterations']} it / fit; one term, 3 lookups")  # fmt: skip
    console.print(table)
    console.print(f"import floor of every child: {fmt_gb(floor)}; ratios: rows/s of ours / rows/s of the other.")
    alt = stages["refresh-alt"]["median_run"]
    console.print(f"pool refresh pieces (s, 1 thread / 2 threads): neighbour search top-5 "
                  f"{alt['search_5_1t_s']:.2f} / {alt['search_5_2t_s']:.2f}, top-55 (what it computes) "
                  f"{alt['search_55_1t_s']:.2f} / {alt['search_55_2t_s']:.2f}, whole refresh "
                  f"{alt['refresh_1t_s']:.2f} / {alt['refresh_2t_s']:.2f}", highlight=False)  # fmt: skip
    contended = {name: [r["contended_by"] for r in s["runs"] if r.get("contended_by")] for name, s in stages.items()}
    contended = {k: v for k, v in contended.items() if v}
    if contended:
        console.print(f"[yellow]runs during which another benchmark was busy (kept after {args.retries} retries): "
                      f"{', '.join(f'{k} x{len(v)}' for k, v in contended.items())}[/]")  # fmt: skip
    prof = stages.get("profile", {}).get("median_run", {})
    profile = prof.get("profile_steps")
    if profile:
        console.print(f"cProfile of our training steps ({profile_steps} steps, refresh excluded), top 5 by tottime:")
        for p in profile[:5]:
            console.print(f"  {p['tottime_s']:7.2f} s  {p['ncalls']:>8}  {p['function']}", highlight=False)
        console.print("cProfile of the pool refresh, top 3 by tottime:")
        for p in prof["profile_refresh"][:3]:
            console.print(f"  {p['tottime_s']:7.2f} s  {p['ncalls']:>8}  {p['function']}", highlight=False)

    summary = (f"ours {o:,.0f} rows/s = {o / ref:.1f}x reference (target >= {RATIO_REFERENCE_TARGET:.0f}x: "
               f"{'met' if targets['ours_over_reference']['met'] else 'NOT met'}), {o / b1:.2f}x implicit BPR "
               f"1 thread / {o / b2:.2f}x 2 threads (target >= {RATIO_BPR_TARGET}x: "
               f"{'met' if targets['ours_over_bpr_1thread']['met'] else 'NOT met'}); refresh {refresh_s:.2f} s "
               f"(target <= {REFRESH_TARGET_S:.0f} s: {'met' if targets['refresh_s']['met'] else 'NOT met'})"
               f"{scale_note}; peak ours {fmt_gb(ours['peak_bytes'])}, reference {fmt_gb(stages['reference']['peak_bytes'])}")  # fmt: skip
    console.print(f"[bold]SUMMARY[/]: {summary}", highlight=False)

    content = {
        "benchmark": "training",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "preset": preset,
        "machine": machine_info(),
        "settings": {"dim": args.dim, "batch_size": args.batch_size, "batches": batches, "repeat": repeat,
                     "ref_batches": ref_batches, "ref_warmup": ref_warmup, "ref_repeat": ref_repeat,
                     "ref_workers": args.ref_workers, "ref_threads": args.ref_threads,
                     "ref_pool_users": pool_users, "bpr_iterations": bpr_iterations, "bpr_repeat": bpr_repeat,
                     "profile_steps": profile_steps},  # fmt: skip
        "fold": {"rows": om["n_rows"], "users": om["n_users"], "tracks": om["n_tracks"], "prep": prep},
        "rows_per_s": {"ours": o, "ours_steady": om["steady_rows_per_s"], "reference": ref, "bpr_1thread": b1,
                       "bpr_2threads": b2},  # fmt: skip
        "ratios": ratios,
        "targets": targets,
        "refresh": {"median_s": refresh_s, "max_added_bytes": refresh_added, "runs": refresh_runs,
                    "reference_pools": pools},  # fmt: skip
        "peak_bytes": {name: s["peak_bytes"] for name, s in stages.items()},
        "import_floor_bytes": floor,
        "waited_s": waits,
        "profile_steps_top": profile,
        "profile_refresh_top": prof.get("profile_refresh"),
        "refresh_pieces": alt,
        "contended": contended,
        "stages": stages,
        "summary": summary,
        "total_s": time.perf_counter() - started,
    }
    json_path.write_text(json.dumps(content, indent=1, default=str))
    log(f"saved {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
