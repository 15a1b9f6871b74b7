"""Maximum (causal) entropy IRL on tabular MDPs (Ziebart et al. 2008; Ziebart 2010).

The backward pass computes the soft-optimal policy of a reward (soft value iteration),
the forward pass the state visitation it induces; the gradient of the demonstrations'
log-likelihood with respect to the reward parameters is the expert's feature counts minus
the expected ones, so IRL is gradient ascent until the visitations match.

Conventions are those of ``imitation``'s ``mce_partition_fh`` / ``mce_occupancy_measures``,
so results compare directly:

- finite horizon H: Q[H-1] = r; Q[t] = r + g P V[t+1]; V[t] = logsumexp_a Q[t];
  pi[t] = exp(Q[t] - V[t]). V (H, S), Q and pi (H, S, A).
- D (H+1, S): D[0] = init, D[t+1] = sum_{s,a} D[t, s] pi[t, s, a] P[s, a, :];
  Dcum = sum_t g^t D[t].
- ``horizon=None``: the discounted infinite-horizon fixed points, V (S,), Q and pi (S, A),
  and the discounted visitation d = init + g P_pi^T d.

Where imitation stops (finite horizon, state-only rewards, dense (S, A, S) arrays), these
also take state-action rewards (S, A), the infinite horizon, and sparse transitions: a
``scipy.sparse`` matrix or a torch sparse tensor of shape (S * A, S), row ``s * A + a``
holding P(. | s, a). Inputs may be numpy arrays or torch tensors on any device; outputs
are of the kind of the reward. Every pass is vectorized over states and actions (the only
Python loop is over time steps or fixed-point iterations), in float64.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


# ------------------------------------------------------------------------- backends
class _NumpyOps:
    """The passes' few array operations in numpy: on the CPU, for small and medium dense
    MDPs, numpy's per-call cost (about a microsecond) beats torch's dispatch (several),
    and the passes are a chain of small operations per time step."""

    torch = False

    def asarray(self, x):
        return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, np.float64)

    def empty(self, shape):
        return np.empty(shape)

    def lse(self, q, axis: int = -1):  # logsumexp over ``axis``
        if q.size <= 256:  # one ufunc call: 4 us against 6 at CliffWorld's (28, 4)
            return np.logaddexp.reduce(q, axis=axis)
        m = q.max(axis)  # five calls, but vectorized better on large arrays
        shift = m[None] if axis == 0 else m[..., None]  # (np.expand_dims costs 12 us)
        return m + np.log(np.exp(q - shift).sum(axis))

    def exp(self, x):
        return np.exp(x)

    def powers(self, g, n):
        return g ** np.arange(n, dtype=np.float64)

    def absmax(self, x) -> float:
        return float(np.abs(x).max())


class _TorchOps:
    """The same operations in torch, on ``device`` (sparse transitions, GPUs)."""

    torch = True

    def __init__(self, device):
        self.device = device

    def asarray(self, x):
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        return x.to(device=self.device, dtype=torch.float64)

    def empty(self, shape):
        return torch.empty(shape, dtype=torch.float64, device=self.device)

    def lse(self, q, axis: int = -1):
        return torch.logsumexp(q, dim=axis)

    def exp(self, x):
        return torch.exp(x)

    def powers(self, g, n):
        return g ** torch.arange(n, dtype=torch.float64, device=self.device)

    def absmax(self, x) -> float:
        return float(x.abs().max())


# ----------------------------------------------------------------------- transitions
class Transitions:
    """P(s' | s, a) as a (S * A, S) matrix, dense or sparse, with the two products the
    passes need: ``expect(V)`` = P V, and ``push(x)`` = sum_{s,a} x(s, a) P(s, a, .).

    A dense numpy P runs the passes in numpy (``backend="auto"``, on the CPU); a torch
    tensor, a sparse matrix or another ``device`` runs them in torch.

    Layout: torch works on (S, A) slices; numpy on action-major (A, S) ones
    (``action_major``), where a logsumexp over the actions reduces a leading axis of
    length A: 10 us against 21 over a trailing one at 100 states and 4 actions, half of a
    backward step.
    """

    action_major = False

    def __init__(self, P: Any, device: str | torch.device | None = None, backend: str = "auto"):
        if _is_scipy_sparse(P):
            P = P.tocoo()
            idx = torch.as_tensor(np.vstack([P.row, P.col]), dtype=torch.int64)
            P = torch.sparse_coo_tensor(idx, torch.as_tensor(P.data), P.shape)
        if backend == "auto" and isinstance(P, np.ndarray) and _worth_sparse(P):
            P = torch.as_tensor(P.reshape(-1, P.shape[-1])).to_sparse()
        use_numpy = backend == "numpy" or (
            backend == "auto"
            and isinstance(P, np.ndarray)
            and (device is None or torch.device(device).type == "cpu")
        )
        if use_numpy:
            P = np.asarray(P, np.float64)
            if P.ndim != 3 or P.shape[0] != P.shape[2]:
                raise ValueError(f"P must be (S, A, S), got {P.shape}")
            self.S, self.A = P.shape[0], P.shape[1]
            self.ops: _NumpyOps | _TorchOps = _NumpyOps()
            self.sparse = False
            self.action_major = True  # rows (a, s): see the class's docstring
            self.flat = np.ascontiguousarray(P.transpose(1, 0, 2).reshape(self.A * self.S, self.S))
            self.flat_t = None
            self.device = torch.device("cpu")
            return
        P = torch.as_tensor(P) if not isinstance(P, torch.Tensor) else P
        if device is not None:
            P = P.to(device)
        P = P.to(torch.float64)
        self.device = P.device
        self.ops = _TorchOps(P.device)
        if P.is_sparse or P.layout != torch.strided:
            if P.dim() != 2:
                raise ValueError(f"a sparse P must be 2-D (S * A, S), got {tuple(P.shape)}")
            self.S = P.shape[1]
            self.A = P.shape[0] // self.S
            if self.S * self.A != P.shape[0]:
                raise ValueError(f"a sparse P must be (S * A, S), got {tuple(P.shape)}")
            self.sparse = True
            with warnings.catch_warnings():  # "sparse CSR support is in beta": it is exact here
                warnings.simplefilter("ignore", UserWarning)
                self.flat, self.flat_t = _csr_pair(P)
        else:
            if P.dim() != 3 or P.shape[0] != P.shape[2]:
                raise ValueError(f"P must be (S, A, S), got {tuple(P.shape)}")
            self.S, self.A = P.shape[0], P.shape[1]
            self.sparse = False
            self.flat = P.reshape(self.S * self.A, self.S)
            self.flat_t = None

    def expect(self, V):
        """sum_s' P(s' | s, a) V(s') as (S, A), or (A, S) when ``action_major``."""
        if self.sparse:
            return torch.mv(self.flat, V).reshape(self.S, self.A)
        if self.action_major:
            return (self.flat @ V).reshape(self.A, self.S)
        return (self.flat @ V).reshape(self.S, self.A)

    def push(self, x):
        """sum_{s, a} x(s, a) P(. | s, a) for x of shape (S, A), or (A, S) when
        ``action_major``: the next state distribution."""
        x = x.reshape(-1)
        if self.sparse:
            return torch.mv(self.flat_t, x)
        return x @ self.flat


def _worth_sparse(P: np.ndarray) -> bool:
    """A large, mostly empty dense P runs faster as a sparse matrix: at 1,000 states, 4
    actions and 5 successors (0.5% filled) a pass took 210 ms dense against a few sparse."""
    return P.ndim == 3 and P.size >= 1 << 20 and np.count_nonzero(P) <= 0.05 * P.size


def _csr_pair(P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P and its transpose in CSR (row-major products for both passes)."""
    coo = P.to_sparse_coo().coalesce() if not P.is_sparse else P.coalesce()
    return coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr()


def _is_scipy_sparse(x) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


def _transitions(P, like) -> Transitions:
    """P as Transitions; a torch ``like`` (the reward or the policy) puts the passes in
    torch on its device."""
    if isinstance(P, Transitions):
        return P
    if isinstance(like, torch.Tensor):
        return Transitions(P if not isinstance(P, np.ndarray) else torch.as_tensor(P), like.device)
    return Transitions(P)


def _out(x, like):
    """Results in the kind of ``like``: numpy for numpy inputs, torch for torch ones."""
    if isinstance(like, torch.Tensor):
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, device=like.device)
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


# ------------------------------------------------------------------- backward pass
def soft_value_iteration(
    P,
    r,
    horizon: int | None,
    discount: float = 1.0,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
):
    """Soft (maximum causal entropy) value iteration: ``(V, Q, pi)``.

    Args:
        P: transitions, (S, A, S) dense or (S * A, S) sparse, or a :class:`Transitions`.
        r: reward, (S,) or (S, A).
        horizon: H for the finite-horizon recurrences, None for the discounted fixed point.
        discount: g (must be < 1 when ``horizon`` is None).
        tol, max_iter: the fixed point's stopping rule (max |V_new - V| <= tol).
    """
    T = _transitions(P, r)
    ops = T.ops
    rr = ops.asarray(r)
    if tuple(rr.shape) not in ((T.S,), (T.S, T.A)):
        raise ValueError(
            f"r must be (S,) or (S, A) = ({T.S},) or {(T.S, T.A)}, got {tuple(rr.shape)}"
        )
    r_sa = rr[:, None] * ops.asarray(np.ones((1, T.A))) if rr.ndim == 1 else rr
    # the backend's layout (see Transitions): slices (S, A), or (A, S) when action-major;
    # a = the action axis of a slice; results are handed back as (.., S, A) either way
    am = T.action_major
    a = 0 if am else -1
    r_l = np.ascontiguousarray(r_sa.T) if am else r_sa
    if horizon is not None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        V = ops.empty((horizon, T.S))
        Q = ops.empty((horizon, *r_l.shape))
        Q[horizon - 1] = r_l
        V[horizon - 1] = ops.lse(Q[horizon - 1], a)
        for t in range(horizon - 2, -1, -1):
            PV = T.expect(V[t + 1])
            Q[t] = r_l + (PV if discount == 1.0 else discount * PV)
            V[t] = ops.lse(Q[t], a)
        pi = ops.exp(Q - (V[:, None, :] if am else V[:, :, None]))
        if am:  # (H, S, A) views of the action-major arrays
            Q, pi = Q.transpose(0, 2, 1), pi.transpose(0, 2, 1)
        return _out(V, r), _out(Q, r), _out(pi, r)
    if not 0 <= discount < 1:
        raise ValueError(f"the infinite horizon needs discount in [0, 1), got {discount}")
    V = ops.asarray(np.zeros(T.S))
    for _ in range(max_iter):
        V_new = ops.lse(r_l + discount * T.expect(V), a)
        delta = ops.absmax(V_new - V)
        V = V_new
        if delta <= tol:
            break
    else:
        raise RuntimeError(f"soft value iteration did not converge in {max_iter} iterations")
    Q = r_l + discount * T.expect(V)
    pi = ops.exp(Q - (V[None, :] if am else V[:, None]))
    if am:
        Q, pi = Q.T, pi.T
    return _out(V, r), _out(Q, r), _out(pi, r)


# -------------------------------------------------------------------- forward pass
def state_visitation(
    P,
    pi,
    init,
    horizon: int | None,
    discount: float = 1.0,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
):
    """State visitation of policy ``pi`` from ``init``: ``(D, Dcum)``.

    Finite horizon: pi (H, S, A), D (H + 1, S), Dcum = sum_t g^t D[t] (S,).
    ``horizon=None``: pi (S, A); D = Dcum = the discounted visitation d (S,) solving
    d = init + g P_pi^T d (mass 1 / (1 - g)).
    """
    T = _transitions(P, pi)
    ops = T.ops
    p = ops.asarray(pi)
    d0 = ops.asarray(init)
    if horizon is not None:
        if tuple(p.shape) != (horizon, T.S, T.A):
            raise ValueError(f"pi must be (H, S, A) = {(horizon, T.S, T.A)}, got {tuple(p.shape)}")
        D = ops.empty((horizon + 1, T.S))
        D[0] = d0
        if T.action_major:  # (H, A, S): a view of the backward pass's own array
            p = p.transpose(0, 2, 1)
            for t in range(horizon):
                D[t + 1] = T.push(p[t] * D[t])
        else:
            for t in range(horizon):
                D[t + 1] = T.push(D[t][:, None] * p[t])
        Dcum = (ops.powers(discount, horizon + 1)[:, None] * D).sum(0)
        return _out(D, pi), _out(Dcum, pi)
    if not 0 <= discount < 1:
        raise ValueError(f"the infinite horizon needs discount in [0, 1), got {discount}")
    if tuple(p.shape) != (T.S, T.A):
        raise ValueError(f"pi must be (S, A) = {(T.S, T.A)}, got {tuple(p.shape)}")
    d = d0
    if T.action_major:
        p = np.ascontiguousarray(p.T)
    for _ in range(max_iter):
        d_new = d0 + discount * T.push(p * d if T.action_major else d[:, None] * p)
        delta = ops.absmax(d_new - d)
        d = d_new
        if delta <= tol:
            break
    else:
        raise RuntimeError(f"the visitation did not converge in {max_iter} iterations")
    return _out(d, pi), _out(d, pi)


def state_action_visitation(D, pi, discount: float = 1.0, horizon: int | None = None):
    """sum_t g^t D[t, s] pi[t, s, a] (S, A) from a finite-horizon D (H + 1, S) and pi
    (H, S, A); for the infinite horizon (``horizon=None``) d[s] pi[s, a]."""
    if horizon is None:
        return D[:, None] * pi
    ops = _TorchOps(pi.device) if isinstance(pi, torch.Tensor) else _NumpyOps()
    return (ops.powers(discount, horizon)[:, None, None] * D[:horizon, :, None] * pi).sum(0)


# ------------------------------------------------------------------------------ IRL
@dataclass
class IRLResult:
    """What ``maxent_irl`` learned."""

    reward: np.ndarray  # (S,) or (S, A)
    pi: np.ndarray  # (H, S, A) or (S, A)
    visitation: np.ndarray  # the learned reward's (S,) or (S, A) visitation
    iterations: int
    converged: bool
    history: list[dict] = field(default_factory=list)
    model: torch.nn.Module | None = None


def reward_model(
    kind: str,
    n_features: int,
    n_actions: int,
    state_action: bool,
    hidden: tuple[int, ...] = (32, 32),
) -> torch.nn.Module:
    """A reward over features: ``linear`` (theta . phi) or ``mlp``; state-action rewards
    output one value per action."""
    out = n_actions if state_action else 1
    if kind == "linear":
        model = torch.nn.Linear(n_features, out, bias=False)
        torch.nn.init.zeros_(model.weight)
        return model.double()
    if kind == "mlp":
        layers: list[torch.nn.Module] = []
        inp = n_features
        for h in hidden:
            layers += [torch.nn.Linear(inp, h), torch.nn.ReLU()]
            inp = h
        layers.append(torch.nn.Linear(inp, out))
        return torch.nn.Sequential(*layers).double()
    raise ValueError(f"reward model must be linear or mlp, got {kind!r}")


def maxent_irl(
    P,
    features,
    init,
    expert_visitation,
    *,
    horizon: int | None,
    discount: float = 1.0,
    model: str | torch.nn.Module = "linear",
    state_action: bool = False,
    lr: float = 0.05,
    max_iter: int = 1000,
    linf_eps: float = 1e-3,
    grad_eps: float = 1e-6,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: Any = None,
) -> IRLResult:
    """Learn a reward whose soft-optimal policy visits states as the expert did.

    Args:
        P: transitions (see the module).
        features: (S, F) features of each state.
        init: (S,) initial state distribution.
        expert_visitation: the expert's discounted visitation counts per demonstration,
            (S,) for a state reward or (S, A) for a state-action one (``expert_visitation``
            of a list of trajectories computes them).
        horizon, discount: as for ``soft_value_iteration``.
        model: ``linear`` (theta . phi, from zero), ``mlp``, or a torch module mapping
            (S, F) features to (S,) / (S, 1) or (S, A) rewards.
        state_action: learn r(s, a) instead of r(s).
        lr: Adam's learning rate.
        max_iter: iteration limit.
        linf_eps: stop when max |visitation - expert_visitation| <= linf_eps (imitation's
            rule), or when the gradient norm is below ``grad_eps``.
        device: where the passes run (cuda for large MDPs when present).
        seed: seeds the MLP's initialization.
        progress: an object with ``update(n)`` and ``set_postfix`` (a tqdm bar).
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    # the passes: numpy for a dense numpy P on the CPU, torch otherwise (see Transitions)
    T = P if isinstance(P, Transitions) else Transitions(P, device)
    ops = T.ops
    phi = torch.as_tensor(
        np.asarray(features) if not isinstance(features, torch.Tensor) else features
    ).to(device=device, dtype=torch.float64)
    if phi.dim() != 2 or phi.shape[0] != T.S:
        raise ValueError(f"features must be (S, F) with S = {T.S}, got {tuple(phi.shape)}")
    init_p = ops.asarray(init)
    target = ops.asarray(expert_visitation)
    want = (T.S, T.A) if state_action else (T.S,)
    if tuple(target.shape) != want:
        raise ValueError(f"expert_visitation must be {want}, got {tuple(target.shape)}")
    net = (
        reward_model(model, phi.shape[1], T.A, state_action) if isinstance(model, str) else model
    ).to(device=device, dtype=torch.float64)
    try:  # the fused kernel: a third of the time of the per-tensor loop for small nets
        opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        opt = torch.optim.Adam(net.parameters(), lr=lr)

    def passes(r):
        r_p = ops.asarray(r.detach() if isinstance(r, torch.Tensor) else r)
        _, _, pi = soft_value_iteration(T, r_p, horizon, discount)
        D, Dcum = state_visitation(T, pi, init_p, horizon, discount)
        visit = state_action_visitation(D, pi, discount, horizon) if state_action else Dcum
        return pi, visit

    def reward() -> torch.Tensor:
        r = net(phi)
        return r if state_action else r.reshape(-1)

    # a linear reward with the passes in numpy: its gradient in closed form, phi^T (D - D_E),
    # without autograd (whose per-call cost was a third of an iteration at 100 states)
    closed_form = (
        isinstance(net, torch.nn.Linear)
        and net.bias is None
        and not ops.torch
        and phi.device.type == "cpu"
    )
    if closed_form:
        weight = net.weight.detach().numpy()  # shares memory: sees every Adam step
        phi_np = phi.numpy()

    history = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        if closed_form:
            r = phi_np @ weight.T
            r = r if state_action else r.reshape(-1)
            _, visit = passes(r)
            diff = visit - target
            grad = diff.reshape(T.S, -1).T @ phi_np  # d/dW of sum(diff * r), (out, F)
            net.weight.grad = torch.from_numpy(grad)
            grad_norm = float(np.sqrt((grad * grad).sum()))
        else:
            r = reward()
            _, visit = passes(r)
            diff = visit - target
            opt.zero_grad()
            # d/dtheta of (E_pi[r] - E_D[r]) is minus the log-likelihood's gradient
            loss = (torch.as_tensor(diff, device=device) * r).sum()
            loss.backward()
            grads = [p.grad.reshape(-1) for p in net.parameters() if p.grad is not None]
            grad_norm = float(torch.linalg.vector_norm(torch.cat(grads)))
        linf = ops.absmax(diff)
        history.append({"iteration": it, "linf": linf, "grad_norm": grad_norm})
        if progress is not None:
            progress.update(1)
            progress.set_postfix(linf=f"{linf:.2e}", refresh=False)
        if linf <= linf_eps or grad_norm <= grad_eps:
            converged = True
            break
        opt.step()
    with torch.no_grad():
        r = reward()
        pi, visit = passes(r)
    as_np = _NumpyOps().asarray
    return IRLResult(
        reward=as_np(r),
        pi=as_np(pi),
        visitation=as_np(visit),
        iterations=it,
        converged=converged,
        history=history,
        model=net,
    )


def expert_visitation(
    trajectories: list[tuple[np.ndarray, np.ndarray]],
    n_states: int,
    n_actions: int,
    *,
    discount: float = 1.0,
    state_action: bool = False,
) -> np.ndarray:
    """Discounted visitation counts per trajectory: each trajectory is (states, actions)
    with states of length T + 1 (the last one after the last action) and actions of length
    T; a state reward counts every state (imitation's convention), a state-action reward
    every (state, action) pair."""
    out = np.zeros((n_states, n_actions) if state_action else n_states)
    for states, actions in trajectories:
        states = np.asarray(states, np.int64)
        if state_action:
            actions = np.asarray(actions, np.int64)
            w = discount ** np.arange(len(actions))
            np.add.at(out, (states[: len(actions)], actions), w)
        else:
            w = discount ** np.arange(len(states))
            np.add.at(out, states, w)
    return out / max(len(trajectories), 1)


def demo_trajectories(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (states, actions) of every episode in an iltk episode file of a tabular env
    (``obs/state`` holds the state index): states of length T + 1 (with the state after
    the last action, from ``next_obs``), actions of length T."""
    from iltk.data import DemoFile

    out = []
    with DemoFile(path) as f:
        for demo in f.demos:
            states = f.read(demo, "obs/state").reshape(-1)
            if not np.issubdtype(states.dtype, np.integer):
                raise ValueError(
                    f"{path}: {demo}/obs/state holds {states.dtype} values, not state indices "
                    "(tabular IRL needs an episode file of a tabular env, e.g. iltk/ObjectWorld-v0)"
                )
            last = f.read(demo, "next_obs/state").reshape(-1)[-1:]
            actions = f.read(demo, "actions").reshape(len(states), -1)[:, 0]
            out.append((np.concatenate([states, last]), actions.astype(np.int64)))
    return out


__all__ = [
    "IRLResult",
    "Transitions",
    "demo_trajectories",
    "expert_visitation",
    "maxent_irl",
    "reward_model",
    "soft_value_iteration",
    "state_action_visitation",
    "state_visitation",
]
