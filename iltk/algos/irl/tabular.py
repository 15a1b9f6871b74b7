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

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


# ----------------------------------------------------------------------- transitions
class Transitions:
    """P(s' | s, a) as a (S * A, S) matrix, dense or sparse, with the two products the
    passes need: ``expect(V)`` = P V as (S, A), and ``push(x)`` = x^T P for x (S * A,)."""

    def __init__(self, P: Any, device: torch.device | None = None):
        if _is_scipy_sparse(P):
            P = P.tocsr()
            self.S, self.A = P.shape[1], P.shape[0] // P.shape[1]
            if self.S * self.A != P.shape[0]:
                raise ValueError(f"a sparse P must be (S * A, S), got {P.shape}")
            coo = P.tocoo()
            idx = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
            P = torch.sparse_coo_tensor(idx, torch.as_tensor(coo.data), P.shape)
        P = torch.as_tensor(P) if not isinstance(P, torch.Tensor) else P
        if device is not None:
            P = P.to(device)
        P = P.to(torch.float64)
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
        self.device = P.device

    def expect(self, V: torch.Tensor) -> torch.Tensor:
        """sum_s' P(s' | s, a) V(s') as (S, A)."""
        if self.sparse:
            return torch.mv(self.flat, V).reshape(self.S, self.A)
        return (self.flat @ V).reshape(self.S, self.A)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        """sum_{s, a} x(s, a) P(. | s, a) for x of shape (S, A): the next state distribution."""
        x = x.reshape(-1)
        if self.sparse:
            return torch.mv(self.flat_t, x)
        return x @ self.flat


def _csr_pair(P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P and its transpose in CSR (row-major products for both passes)."""
    coo = P.to_sparse_coo().coalesce() if not P.is_sparse else P.coalesce()
    return coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr()


def _is_scipy_sparse(x) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


def _as_tensor(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(
        device=device, dtype=torch.float64
    )


def _transitions(P, device) -> Transitions:
    return P if isinstance(P, Transitions) else Transitions(P, device)


def _out(x: torch.Tensor, like_numpy: bool):
    return x.cpu().numpy() if like_numpy else x


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
        P: transitions, (S, A, S) dense or (S * A, S) sparse (see the module).
        r: reward, (S,) or (S, A).
        horizon: H for the finite-horizon recurrences, None for the discounted fixed point.
        discount: g (must be < 1 when ``horizon`` is None).
        tol, max_iter: the fixed point's stopping rule (max |V_new - V| <= tol).
    """
    numpy_out = not isinstance(r, torch.Tensor)
    device = r.device if isinstance(r, torch.Tensor) else None
    T = _transitions(P, device)
    r = _as_tensor(r, T.device)
    r_sa = r[:, None].expand(T.S, T.A) if r.dim() == 1 else r
    if r_sa.shape != (T.S, T.A):
        raise ValueError(
            f"r must be (S,) or (S, A) = ({T.S},) or {(T.S, T.A)}, got {tuple(r.shape)}"
        )
    if horizon is not None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        V = torch.empty(horizon, T.S, dtype=torch.float64, device=T.device)
        Q = torch.empty(horizon, T.S, T.A, dtype=torch.float64, device=T.device)
        Q[horizon - 1] = r_sa
        V[horizon - 1] = torch.logsumexp(Q[horizon - 1], dim=1)
        for t in range(horizon - 2, -1, -1):
            Q[t] = r_sa + discount * T.expect(V[t + 1])
            V[t] = torch.logsumexp(Q[t], dim=1)
        pi = torch.exp(Q - V[:, :, None])
        return _out(V, numpy_out), _out(Q, numpy_out), _out(pi, numpy_out)
    if not 0 <= discount < 1:
        raise ValueError(f"the infinite horizon needs discount in [0, 1), got {discount}")
    V = torch.zeros(T.S, dtype=torch.float64, device=T.device)
    for _ in range(max_iter):
        Q = r_sa + discount * T.expect(V)
        V_new = torch.logsumexp(Q, dim=1)
        delta = float((V_new - V).abs().max())
        V = V_new
        if delta <= tol:
            break
    else:
        raise RuntimeError(f"soft value iteration did not converge in {max_iter} iterations")
    Q = r_sa + discount * T.expect(V)
    pi = torch.exp(Q - V[:, None])
    return _out(V, numpy_out), _out(Q, numpy_out), _out(pi, numpy_out)


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
    numpy_out = not isinstance(pi, torch.Tensor)
    device = pi.device if isinstance(pi, torch.Tensor) else None
    T = _transitions(P, device)
    pi = _as_tensor(pi, T.device)
    init = _as_tensor(init, T.device)
    if horizon is not None:
        if pi.shape != (horizon, T.S, T.A):
            raise ValueError(f"pi must be (H, S, A) = {(horizon, T.S, T.A)}, got {tuple(pi.shape)}")
        D = torch.empty(horizon + 1, T.S, dtype=torch.float64, device=T.device)
        D[0] = init
        for t in range(horizon):
            D[t + 1] = T.push(D[t][:, None] * pi[t])
        weights = discount ** torch.arange(horizon + 1, dtype=torch.float64, device=T.device)
        Dcum = (weights[:, None] * D).sum(0)
        return _out(D, numpy_out), _out(Dcum, numpy_out)
    if not 0 <= discount < 1:
        raise ValueError(f"the infinite horizon needs discount in [0, 1), got {discount}")
    if pi.shape != (T.S, T.A):
        raise ValueError(f"pi must be (S, A) = {(T.S, T.A)}, got {tuple(pi.shape)}")
    d = init.clone()
    for _ in range(max_iter):
        d_new = init + discount * T.push(d[:, None] * pi)
        delta = float((d_new - d).abs().max())
        d = d_new
        if delta <= tol:
            break
    else:
        raise RuntimeError(f"the visitation did not converge in {max_iter} iterations")
    return _out(d, numpy_out), _out(d, numpy_out)


def state_action_visitation(D, pi, discount: float = 1.0, horizon: int | None = None):
    """sum_t g^t D[t, s] pi[t, s, a] (S, A) from a finite-horizon D (H + 1, S) and pi
    (H, S, A); for the infinite horizon (``horizon=None``) d[s] pi[s, a]."""
    if horizon is None:
        return D[:, None] * pi
    if isinstance(pi, torch.Tensor):
        w = discount ** torch.arange(horizon, dtype=pi.dtype, device=pi.device)
        return (w[:, None, None] * D[:horizon, :, None] * pi).sum(0)
    w = discount ** np.arange(horizon)
    return (w[:, None, None] * D[:horizon, :, None] * pi).sum(0)


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
    T = _transitions(P, device)
    phi = _as_tensor(features, device)
    if phi.dim() != 2 or phi.shape[0] != T.S:
        raise ValueError(f"features must be (S, F) with S = {T.S}, got {tuple(phi.shape)}")
    init_t = _as_tensor(init, device)
    target = _as_tensor(expert_visitation, device)
    want = (T.S, T.A) if state_action else (T.S,)
    if tuple(target.shape) != want:
        raise ValueError(f"expert_visitation must be {want}, got {tuple(target.shape)}")
    net = (
        reward_model(model, phi.shape[1], T.A, state_action) if isinstance(model, str) else model
    ).to(device=device, dtype=torch.float64)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        r = net(phi)
        r = r.squeeze(-1) if not state_action else r
        with torch.no_grad():
            _, _, pi = soft_value_iteration(T, r.detach(), horizon, discount)
            D, Dcum = state_visitation(T, pi, init_t, horizon, discount)
            visit = state_action_visitation(D, pi, discount, horizon) if state_action else Dcum
        opt.zero_grad()
        # d/dtheta of (E_pi[r] - E_D[r]) is minus the log-likelihood's gradient
        loss = ((visit - target) * r).sum()
        loss.backward()
        grad_norm = math.sqrt(sum(float((p.grad**2).sum()) for p in net.parameters()))
        linf = float((visit - target).abs().max())
        history.append({"iteration": it, "linf": linf, "grad_norm": grad_norm})
        if progress is not None:
            progress.update(1)
            progress.set_postfix(linf=f"{linf:.2e}")
        if linf <= linf_eps or grad_norm <= grad_eps:
            converged = True
            break
        opt.step()
    with torch.no_grad():
        r = net(phi)
        r = r.squeeze(-1) if not state_action else r
        _, _, pi = soft_value_iteration(T, r, horizon, discount)
        D, Dcum = state_visitation(T, pi, init_t, horizon, discount)
        visit = state_action_visitation(D, pi, discount, horizon) if state_action else Dcum
    return IRLResult(
        reward=r.cpu().numpy(),
        pi=pi.cpu().numpy(),
        visitation=visit.cpu().numpy(),
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


__all__ = [
    "IRLResult",
    "Transitions",
    "expert_visitation",
    "maxent_irl",
    "reward_model",
    "soft_value_iteration",
    "state_action_visitation",
    "state_visitation",
]
