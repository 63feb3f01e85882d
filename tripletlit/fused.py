"""The fused CPU training step: composite-loss gradients and lazy Adam in one compiled loop.

On one CPU the autograd path (embedding lookups, cosine, hinge, backward, ``SparseAdam``) spends
most of its time in per-operation overhead and in coalescing sparse gradients, not in
arithmetic. This module computes the same step in a numba kernel, many batches per call:

for each batch of ``batch_size`` triplets (u_a, s_p, s_n, u_p, u_n, s_a) with weights w_i:

1. the loss of :func:`tripletlit.losses.composite_loss` (batch mean of
   ``w_i * [T0 + lambda1 T1 + lambda2 T2]``, T = cosine triplet hinge) and its exact gradient
   with respect to the six looked-up rows, written by hand:
   ``d cos(a, b) / d a = (b/|b| - cos(a, b) a/|a|) / |a|``;
2. the gradient rows of each table summed per distinct row (what coalescing a sparse gradient
   does), in row order, so the result does not depend on thread scheduling;
3. lazy Adam on exactly those rows, with ``torch.optim.SparseAdam``'s formulas (bias
   correction by the global step of the table; ``eps`` added to ``sqrt(v)``).

The result equals ``sparse_adam`` training up to float rounding (tests compare the two on the
same triplets). :class:`FusedAdam` is a ``torch.optim.Optimizer`` so Lightning saves and
restores its state (``exp_avg``, ``exp_avg_sq``, ``step`` per table) in checkpoints; the two moments
of a table are the halves of the rows of one buffer, so a row's update fetches one block.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tripletlit import memory

EPS_NORM = 1e-8  # the clamp of each vector's norm (as F.cosine_similarity's eps)


AHEAD = 8  # rows prefetched ahead in the random-access loops


@intrinsic
def _prefetch_row(typingctx, table, row):
    """Hint the CPU to start loading row ``row`` of a 2-D C-contiguous table (every cache line
    of it); the loops that touch random rows otherwise wait for each row's misses in turn."""

    def codegen(context, builder, signature, args):
        table_type = signature.args[0]
        array = context.make_array(table_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        start = cgutils.get_item_pointer(context, builder, table_type, array, [args[1], zero], wraparound=False)
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]), "llvm.prefetch.p0"
        )
        row_bytes = cgutils.unpack_tuple(builder, array.strides, 2)[0]
        base = builder.bitcast(start, byte_ptr)
        line = context.get_constant(types.intp, 64)
        # one hint per 64-byte cache line of the row
        with cgutils.for_range(builder, builder.udiv(row_bytes, line)) as loop:
            builder.call(hint, [builder.gep(base, [builder.mul(loop.index, line)]), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(table, row), codegen


FAST = {"reassoc", "contract", "nsz", "arcp"}  # vectorised sums; no assumption about NaN or inf


@njit(cache=True, nogil=True, error_model="numpy")
def _train_batches(U, T, MU, MT, step0, users, pos, neg, upos, uneg, sanc, weight, batch_size,
                   lam1, lam2, m0, m1, m2, lr, beta1, beta2, eps, slotU, slotT, uniqU, uniqT, PU, PT, GU, GT,
                   losses):  # fmt: skip
    """Train on ``len(users)`` triplets in batches; returns the number of Adam steps taken.

    ``slotU``/``slotT`` (table length, int32, all -1 on entry and on exit) map a table row to
    its place among a batch's distinct rows; ``uniqU``/``uniqT``, ``PU``/``PT`` (copies of the
    distinct rows) and ``GU``/``GT`` (their gradients), 3 x batch rows each, are workspace;
    ``losses`` (n_batches, 4) receives the total and the three terms of each batch.
    """
    n = users.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    terms = np.zeros(3, dtype=np.float64)
    for b in range(n_batches):
        start = b * batch_size
        stop = min(n, start + batch_size)
        # distinct rows of each table in first-seen order (u_a, u_p, u_n / s_p, s_n, s_a),
        # copied out first: independent loads overlap, the maths then runs on cached rows
        nu = 0
        nt = 0
        for i in range(start, stop):
            for r in (users[i], upos[i], uneg[i]):
                if slotU[r] < 0:
                    slotU[r] = nu
                    uniqU[nu] = r
                    nu += 1
            for r in (pos[i], neg[i], sanc[i]):
                if slotT[r] < 0:
                    slotT[r] = nt
                    uniqT[nt] = r
                    nt += 1
        _gather(U, uniqU, nu, PU, GU)
        _gather(T, uniqT, nt, PT, GT)
        _batch_grads(PU, PT, GU, GT, slotU, slotT, users, pos, neg, upos, uneg, sanc, weight, start, stop,
                     lam1, lam2, m0, m1, m2, terms)  # fmt: skip
        losses[b, 0] = terms[0] + lam1 * terms[1] + lam2 * terms[2]
        losses[b, 1] = terms[0]
        losses[b, 2] = terms[1]
        losses[b, 3] = terms[2]
        # lazy Adam on the distinct rows (SparseAdam's update), then reset the slot maps
        step = step0 + b + 1
        step_size = lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        _adam_rows(U, MU, uniqU, PU, GU, nu, step_size, beta1, beta2, eps)
        _adam_rows(T, MT, uniqT, PT, GT, nt, step_size, beta1, beta2, eps)
        for j in range(nu):
            slotU[uniqU[j]] = -1
        for j in range(nt):
            slotT[uniqT[j]] = -1
    return n_batches


@njit(cache=True, fastmath=FAST, nogil=True, error_model="numpy")
def _batch_grads(PU, PT, GU, GT, slotU, slotT, users, pos, neg, upos, uneg, sanc, weight, start, stop,
                 lam1, lam2, m0, m1, m2, terms):  # fmt: skip
    """Loss terms of triplets ``start:stop`` into ``terms`` and their gradients added to GU/GT."""
    d = PU.shape[1]
    f32 = np.float32
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    inv_b = 1.0 / (stop - start)
    tiny = f32(EPS_NORM)
    for i in range(start, stop):
        ia, iup, iun = slotU[users[i]], slotU[upos[i]], slotU[uneg[i]]
        ip, ineg, isa = slotT[pos[i]], slotT[neg[i]], slotT[sanc[i]]
        a, up, un = PU[ia], PU[iup], PU[iun]
        p, ng, sa = PT[ip], PT[ineg], PT[isa]
        saa = f32(0.0)
        sup = f32(0.0)
        sun = f32(0.0)
        spp = f32(0.0)
        snn = f32(0.0)
        sss = f32(0.0)
        dap = f32(0.0)
        dan = f32(0.0)
        daup = f32(0.0)
        daun = f32(0.0)
        dsp = f32(0.0)
        dsn = f32(0.0)
        for k in range(d):
            ak, pk, nk, sk, uk, vk = a[k], p[k], ng[k], sa[k], up[k], un[k]
            saa += ak * ak
            sup += uk * uk
            sun += vk * vk
            spp += pk * pk
            snn += nk * nk
            sss += sk * sk
            dap += ak * pk
            dan += ak * nk
            daup += ak * uk
            daun += ak * vk
            dsp += sk * pk
            dsn += sk * nk
        na = max(math.sqrt(saa), tiny)
        nup = max(math.sqrt(sup), tiny)
        nun = max(math.sqrt(sun), tiny)
        npp = max(math.sqrt(spp), tiny)
        nnn = max(math.sqrt(snn), tiny)
        nsa = max(math.sqrt(sss), tiny)
        cap = dap / (na * npp)
        can = dan / (na * nnn)
        caup = daup / (na * nup)
        caun = daun / (na * nun)
        csp = dsp / (nsa * npp)
        csn = dsn / (nsa * nnn)
        h0 = can - cap + m0
        h1 = caun - caup + m1
        h2 = csn - csp + m2
        w = weight[i] * inv_b
        c0 = w if h0 > 0.0 else 0.0
        c1 = w * lam1 if h1 > 0.0 else 0.0
        c2 = w * lam2 if h2 > 0.0 else 0.0
        t0 += c0 * h0
        t1 += w * h1 if h1 > 0.0 else 0.0
        t2 += w * h2 if h2 > 0.0 else 0.0
        if c0 == 0.0 and c1 == 0.0 and c2 == 0.0:
            continue  # every hinge closed: zero gradient (the rows still get their Adam step)
        ga, gup, gun = GU[ia], GU[iup], GU[iun]
        gp, gn, gs = GT[ip], GT[ineg], GT[isa]
        # d cos(x, y)/dx = (y/|y| - cos x/|x|) / |x|, per coefficient and row
        ra, rup, run, rp, rn, rs = 1.0 / na, 1.0 / nup, 1.0 / nun, 1.0 / npp, 1.0 / nnn, 1.0 / nsa
        ka_n, ka_p = f32(c0 * rn * ra), f32(-c0 * rp * ra)
        ka_un, ka_up = f32(c1 * run * ra), f32(-c1 * rup * ra)
        ka_a = f32((c0 * (cap - can) + c1 * (caup - caun)) * ra * ra)
        kup_a, kup_up = f32(-c1 * ra * rup), f32(c1 * caup * rup * rup)
        kun_a, kun_un = f32(c1 * ra * run), f32(-c1 * caun * run * run)
        kp_a, kp_s, kp_p = f32(-c0 * ra * rp), f32(-c2 * rs * rp), f32((c0 * cap + c2 * csp) * rp * rp)
        kn_a, kn_s, kn_n = f32(c0 * ra * rn), f32(c2 * rs * rn), f32(-(c0 * can + c2 * csn) * rn * rn)
        ks_n, ks_p, ks_s = f32(c2 * rn * rs), f32(-c2 * rp * rs), f32(c2 * (csp - csn) * rs * rs)
        for k in range(d):
            ak, pk, nk, sk, uk, vk = a[k], p[k], ng[k], sa[k], up[k], un[k]
            ga[k] += ka_n * nk + ka_p * pk + ka_un * vk + ka_up * uk + ka_a * ak
            gup[k] += kup_a * ak + kup_up * uk
            gun[k] += kun_a * ak + kun_un * vk
            gp[k] += kp_a * ak + kp_s * sk + kp_p * pk
            gn[k] += kn_a * ak + kn_s * sk + kn_n * nk
            gs[k] += ks_n * nk + ks_p * pk + ks_s * sk
    terms[0] = t0
    terms[1] = t1
    terms[2] = t2


@njit(cache=True, nogil=True, error_model="numpy")
def _gather(P, rows, n, PC, G):
    """PC[:n] = P[rows[:n]] and G[:n] = 0 (element loops: numba's row-slice copies are slower)."""
    d = P.shape[1]
    # the prefetch window is written out here and in _adam_rows: a shared helper (inlined or
    # not) made the kernel 6-8 % slower on the EvalRS fold
    for j in range(min(n, AHEAD)):
        _prefetch_row(P, rows[j])
    for j in range(n):
        if j + AHEAD < n:
            _prefetch_row(P, rows[j + AHEAD])
        r = rows[j]
        for k in range(d):
            PC[j, k] = P[r, k]
            G[j, k] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def _adam_rows(P, MV, rows, PC, G, n, step_size, beta1, beta2, eps):
    """SparseAdam's update of rows ``rows[:n]`` of P (whose current values are PC[:n]); row r of
    MV holds both moments of row r of P, ``exp_avg`` then ``exp_avg_sq`` (one block to fetch)."""
    d = P.shape[1]
    ssz = np.float32(step_size)
    one_b1 = np.float32(1.0 - beta1)
    one_b2 = np.float32(1.0 - beta2)
    e = np.float32(eps)
    for j in range(min(n, AHEAD)):
        _prefetch_row(MV, rows[j])
    for j in range(n):
        if j + AHEAD < n:
            _prefetch_row(MV, rows[j + AHEAD])
        r = rows[j]
        for k in range(d):
            gk = G[j, k]
            mk = MV[r, k] + (gk - MV[r, k]) * one_b1
            vk = MV[r, d + k] + (gk * gk - MV[r, d + k]) * one_b2
            MV[r, k] = mk
            MV[r, d + k] = vk
            P[r, k] = PC[j, k] - ssz * (mk / (math.sqrt(vk) + e))


class FusedAdam(torch.optim.Optimizer):
    """Lazy Adam for the two embedding tables, stepped by :meth:`train` (the fused kernel).

    ``params``: ``[users.weight, tracks.weight]`` (CPU, float32, contiguous). The state per
    table is ``exp_avg``, ``exp_avg_sq`` and ``step`` (an int tensor), as SparseAdam keeps it.
    Gradients never reach ``.grad``: :meth:`step` only runs its closure, which calls
    :meth:`train` (so Lightning's ``optimizer.step(closure)`` counts one step per call).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})
        tables = self.param_groups[0]["params"]
        if len(self.param_groups) != 1 or len(tables) != 2:
            raise ValueError("FusedAdam takes exactly the two tables [users.weight, tracks.weight]")
        for table in tables:
            if table.device.type != "cpu" or table.dtype != torch.float32:
                raise ValueError("FusedAdam runs on CPU float32 tables; use train.optimizer=adam on other devices")
        self._work: dict[str, np.ndarray] = {}

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise RuntimeError("FusedAdam is stepped by FusedAdam.train(...), which computes its own gradients; "
                               "step(closure) runs a closure that calls it")  # fmt: skip
        return closure()

    def _state(self, table: torch.Tensor) -> dict:
        state = self.state[table]
        if not state:
            state["step"] = torch.tensor(0, dtype=torch.int64)
            both = memory.empty((table.shape[0], 2, table.shape[1]), table.dtype).zero_()
            state["exp_avg"], state["exp_avg_sq"] = both[:, 0], both[:, 1]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for table in self.param_groups[0]["params"]:
            if self.state[table]:
                self._interleave(self.state[table], table)

    @staticmethod
    def _interleave(state: dict, table: torch.Tensor) -> None:
        """Make ``exp_avg`` and ``exp_avg_sq`` the two halves of the rows of one (n, 2, d)
        buffer in memory advised for huge pages, the layout :meth:`_state` creates: the update
        of a random row then fetches one contiguous block for both moments, without a page walk
        (measured: the kernel ~4 % faster than with two separate moment tables, both in huge
        pages, at EvalRS scale). Restored moments (a checkpoint saves the two views of that
        buffer; older ones saved two tensors) are moved there once, by :meth:`load_state_dict`."""
        m, v = state["exp_avg"], state["exp_avg_sq"]
        n, d = table.shape
        if (m.untyped_storage().data_ptr() == v.untyped_storage().data_ptr() and m.storage_offset() == 0
                and v.storage_offset() == d and m.stride() == v.stride() == (2 * d, 1)):  # fmt: skip
            return
        both = memory.empty((n, 2, d), table.dtype)
        both[:, 0].copy_(m)
        both[:, 1].copy_(v)
        state["exp_avg"], state["exp_avg_sq"] = both[:, 0], both[:, 1]

    @staticmethod
    def _moments(state: dict) -> np.ndarray:
        """The (n, 2 d) array under ``exp_avg`` (first d columns) and ``exp_avg_sq``."""
        m = state["exp_avg"]
        return m.as_strided((m.shape[0], 2 * m.shape[1]), (2 * m.shape[1], 1)).numpy()

    def _workspace(self, n_users: int, n_tracks: int, rows: int, dim: int) -> dict[str, np.ndarray]:
        w = self._work
        if w.get("key") != (n_users, n_tracks, rows, dim):
            w.clear()
            w.update(key=(n_users, n_tracks, rows, dim),
                     slotU=np.full(n_users, -1, np.int32), slotT=np.full(n_tracks, -1, np.int32),
                     uniqU=np.empty(3 * rows, np.int64), uniqT=np.empty(3 * rows, np.int64),
                     PU=np.empty((3 * rows, dim), np.float32), PT=np.empty((3 * rows, dim), np.float32),
                     GU=np.empty((3 * rows, dim), np.float32), GT=np.empty((3 * rows, dim), np.float32))  # fmt: skip
        return w

    def train(self, triplets, weight: np.ndarray, batch_size: int, lambda_user: float, lambda_song: float,
              margins: tuple[float, float, float]) -> np.ndarray:  # fmt: skip
        """Take one Adam step per ``batch_size`` consecutive triplets; returns (n_batches, 4)
        float64 losses: total, user_song, user_user, song_song (weighted batch means)."""
        users_table, tracks_table = self.param_groups[0]["params"]
        group = self.param_groups[0]
        su, st = self._state(users_table), self._state(tracks_table)
        if int(su["step"]) != int(st["step"]):
            raise RuntimeError("FusedAdam: the two tables are at different steps")
        U, T = users_table.detach().numpy(), tracks_table.detach().numpy()
        work = self._workspace(U.shape[0], T.shape[0], batch_size, U.shape[1])
        n = len(triplets.user)
        losses = np.zeros((-(-n // batch_size), 4), dtype=np.float64)

        def ids(a):
            return np.ascontiguousarray(a, dtype=np.int64)

        taken = _train_batches(
            U, T, self._moments(su), self._moments(st),
            int(su["step"]), ids(triplets.user), ids(triplets.positive), ids(triplets.negative),
            ids(triplets.user_positive), ids(triplets.user_negative), ids(triplets.song_anchor),
            np.ascontiguousarray(weight, dtype=np.float32), batch_size, float(lambda_user), float(lambda_song),
            float(margins[0]), float(margins[1]), float(margins[2]), float(group["lr"]), float(group["betas"][0]),
            float(group["betas"][1]), float(group["eps"]), work["slotU"], work["slotT"], work["uniqU"], work["uniqT"],
            work["PU"], work["PT"], work["GU"], work["GT"], losses,
        )  # fmt: skip
        su["step"] += taken
        st["step"] += taken
        return losses
