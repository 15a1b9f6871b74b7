"""The IRL game on a tabular MDP with the deep reward player: the MuJoCo tasks' game where
every expectation is exact (``iltk irl --tabular.solver game``; the tests' ground truth).

The reward player is the one of ``deep.py``: a :class:`~iltk.rewards.RewardNet` of any
class (r(s), r(s, a), r(s, s'), shaped) over the states' features, stepped by Adam on
:func:`~iltk.algos.irl.deep.reward_player_loss`, with the expert's and the policy's
visitation frequencies as the weights of its rows instead of sampled batches. The policy
player, as the lecture notes set the two flavours:

- ``dual``: a best response, soft value iteration on the current reward (an exact RL
  solve), then the reward moves;
- ``primal``: a no-regret step, one mirror-descent (Hedge / natural policy gradient) step
  on the soft Q of the current policy, pi <- pi^(1 - eta) exp(eta Q) normalized, then the
  reward moves.

Rows: a state reward (``s``) has one row per state; the other classes one per (s, a, s')
transition with P(s' | s, a) > 0, weighted by the visitation of (s, a) times P.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from iltk.algos.irl.deep import reward_player_loss
from iltk.algos.irl.tabular import soft_value_iteration, state_visitation
from iltk.algos.settings import RewardPlayerSettings
from iltk.rewards import RewardConfig, RewardNet


@dataclass
class GameResult:
    """What the tabular game learned."""

    reward: np.ndarray  # (S,): the reward of each state (g(s) for a shaped reward)
    pi: np.ndarray  # the last policy: (H, S, A), or (S, A) for the infinite horizon
    visitation: np.ndarray  # (S,) its state visitation (the expert's units)
    net: RewardNet
    history: list[dict] = field(default_factory=list)
    converged: bool = False  # the visitation came within ``tolerance`` of the target


def soft_q(P: np.ndarray, r_sa: np.ndarray, pi: np.ndarray, horizon: int | None, discount: float):
    """The soft Q of policy ``pi`` under reward ``r_sa`` (S, A): finite horizon (H, S, A)
    by the backward recursion, else the discounted fixed point (S, A)."""
    if horizon is not None:
        Q = np.empty_like(pi)
        V = np.zeros(P.shape[0])
        for t in range(horizon - 1, -1, -1):
            Q[t] = r_sa + (discount * P @ V if t < horizon - 1 else 0.0)
            V = (pi[t] * (Q[t] - np.log(np.maximum(pi[t], 1e-300)))).sum(-1)
        return Q
    V = np.zeros(P.shape[0])
    for _ in range(100_000):
        Q = r_sa + discount * P @ V
        V_new = (pi * (Q - np.log(np.maximum(pi, 1e-300)))).sum(-1)
        if np.abs(V_new - V).max() < 1e-10:
            return r_sa + discount * P @ V_new
        V = V_new
    raise RuntimeError("soft policy evaluation did not converge")


def tabular_game(
    P: np.ndarray,
    features: np.ndarray,
    init: np.ndarray,
    expert_sa: np.ndarray,
    *,
    horizon: int | None,
    discount: float = 1.0,
    game: str = "dual",
    kind: str = "s",
    rounds: int = 200,
    settings: RewardPlayerSettings | None = None,
    policy_lr: float = 0.5,
    gamma: float | None = None,
    seed: int = 0,
    target: np.ndarray | None = None,
    tolerance: float = 0.0,
    progress=None,
    lr_decay: float = 0.05,
) -> GameResult:
    """Play the IRL game on a tabular MDP.

    Args:
        P: (S, A, S) dense transitions.
        features: (S, F) the reward network's input for each state.
        init: (S,) initial state distribution.
        expert_sa: (S, A) the expert's discounted state-action visitation per episode (the
            state after the last action of a finite horizon is not in it).
        horizon, discount: the policy player's problem (None: the discounted infinite one).
        game: ``dual`` or ``primal`` (the module docstring).
        kind: the reward class (``iltk.rewards``).
        rounds: moves of the reward player.
        settings: the reward player's (``updates`` Adam steps per move at ``lr``, its
            penalties; ``batch`` and ``replay`` have no use here: the rows are exact).
        policy_lr: primal: the mirror-descent step eta.
        gamma: a shaped reward's discount (default: ``discount``).
        target, tolerance: stop once max |state visitation - target| <= tolerance
            (target: (S,), default the states of ``expert_sa``; the finite horizon's
            demonstrations also count the state after the last action).
        progress: an object with ``update(n)`` and ``set_postfix`` (a tqdm bar).
        lr_decay: the reward player's step at round k is ``lr / (1 + lr_decay * k)``, a
            Robbins-Monro schedule. Adam normalises its steps, so as the visitations meet
            and the gap's gradient shrinks its steps stay about ``lr`` in size: at a
            constant lr the two players circle the equilibrium instead of settling on it
            (0 keeps the lr constant).
    """
    if game not in ("dual", "primal"):
        raise ValueError(f"game must be dual or primal, got {game!r}")
    if not (np.isfinite(lr_decay) and lr_decay >= 0):
        raise ValueError(f"lr_decay must be a finite number >= 0, got {lr_decay!r}")
    st = settings or RewardPlayerSettings(updates=20, lr=1e-2, grad_penalty=0.0, l2=0.0)
    S, A, _ = P.shape
    torch.manual_seed(seed)
    phi = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    config = RewardConfig(
        obs_dim=phi.shape[1],
        action_dim=A,
        hidden=list(st.hidden),
        kind=kind,
        gamma=gamma if gamma is not None else (discount if discount < 1 else 0.99),
    )
    net = RewardNet(config)
    net.set_obs_stats(phi.mean(0), phi.std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(net.parameters(), lr=st.lr)
    eye = torch.eye(A)
    if kind == "s":
        rows = [phi, None, None]
        s_idx = a_idx = s2_idx = None
    else:
        s_idx, a_idx, s2_idx = np.nonzero(P > 0)
        rows = [phi[s_idx], eye[a_idx], phi[s2_idx]]
    p_rows = None if kind == "s" else torch.as_tensor(P[s_idx, a_idx, s2_idx], dtype=torch.float32)

    def row_weights(sa: np.ndarray, s_only: np.ndarray) -> torch.Tensor:
        w = torch.as_tensor(s_only if kind == "s" else sa[s_idx, a_idx], dtype=torch.float32)
        if kind != "s":
            w = w * p_rows
        return w / w.sum()

    expert_s = expert_sa.sum(1)
    w_e = row_weights(expert_sa, expert_s)
    goal = expert_s if target is None else np.asarray(target)

    def reward_sa() -> np.ndarray:
        """The current reward as (S, A): E_{s'}[r(s, a, s')] for the transition classes."""
        with torch.no_grad():
            r = net(*rows).double().numpy()
        if kind == "s":
            return np.repeat(r[:, None], A, 1)
        out = np.zeros((S, A))
        np.add.at(out, (s_idx, a_idx), r * P[s_idx, a_idx, s2_idx])
        return out

    def visit(pi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(S, A) visitation, its states, and the states counted as ``target`` is."""
        D, Dcum = state_visitation(P, pi, init, horizon, discount)
        if horizon is None:
            sa = D[:, None] * pi
        else:
            g = discount ** np.arange(horizon)
            sa = (g[:, None, None] * D[:horizon, :, None] * pi).sum(0)
        return sa, sa.sum(1), (sa.sum(1) if target is None else Dcum)

    pi = np.full((horizon, S, A) if horizon is not None else (S, A), 1.0 / A)
    history = []
    converged = False
    for k in range(rounds):
        r_sa = reward_sa()
        if game == "dual":
            _, _, pi = soft_value_iteration(P, r_sa, horizon, discount)
        else:
            Q = soft_q(P, r_sa, pi, horizon, discount)
            logits = (1 - policy_lr) * np.log(np.maximum(pi, 1e-300)) + policy_lr * Q
            logits -= logits.max(-1, keepdims=True)
            pi = np.exp(logits)
            pi /= pi.sum(-1, keepdims=True)
        sa, s_visit, counted = visit(pi)
        linf = float(np.abs(counted - goal).max())
        if progress is not None:
            progress.update(1)
            progress.set_postfix(linf=f"{linf:.3g}", refresh=False)
        if linf <= tolerance:
            converged = True
            history.append({"round": k, "gap": 0.0, "visitation_linf": linf})
            break
        w_p = row_weights(sa, s_visit)
        for group in opt.param_groups:
            group["lr"] = st.lr / (1.0 + lr_decay * k)
        for _ in range(st.updates):
            loss, gap = reward_player_loss(net, rows, rows, st, weights=(w_e, w_p))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        history.append({"round": k, "gap": float(gap.detach()), "visitation_linf": linf})
    with torch.no_grad():
        if kind == "sa":  # a state's reward: its mean over the actions
            g = torch.stack([net(phi, eye[a].expand(S, A)) for a in range(A)]).mean(0)
        else:
            g = net(phi, None, phi, part="g")
    _, _, counted = visit(pi)
    return GameResult(g.double().numpy(), pi, counted, net, history, converged)


__all__ = ["GameResult", "soft_q", "tabular_game"]
