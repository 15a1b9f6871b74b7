"""Deep MaxEnt IRL as a game (`iltk irl` on the MuJoCo tasks; ``run.py`` dispatches).

The game of the lecture notes ("IRL as a game"): a reward player and a policy player.

- The policy player is PPO (``iltk.rl.ppo``, run by ``iltk.algos.ppo.train_ppo``), with an
  entropy bonus on the current reward: an approximate soft best response. With
  ``--warm-start bc`` it starts as behaviour cloning of the same demonstrations.
- The reward player is an MLP of the class ``--reward.kind`` (r(s), r(s, a), r(s, s') or
  AIRL's shaped g(s) + gamma h(s') - h(s); ``iltk.rewards``) on the task's observations.
  MaxEnt IRL's gradient is E_demo[grad r] - E_policy[grad r] (expert visitation minus the
  visitation of the soft-optimal policy); the reward player ascends it with Adam
  (online gradient steps: a no-regret player) on minibatches of the demonstrations'
  steps against those of the last ``replay`` moves (past policies too: a no-regret
  player answers the mixture of the policies so far, which steadies the game), with the
  penalties of :func:`reward_player_loss`.
- The schedule (``--game``): ``primal`` moves the reward after every PPO update (both
  players no-regret, as GAIL); ``dual`` lets PPO play a best response to the fixed reward
  first (``--best-response`` updates, warm-started from the last policy), as MaxEnt IRL.
- One horizon: an episode that ends before the time limit (at success, or by a fall) is
  its final state held until the limit, on both sides. Demonstrations are padded with
  their final state; the policy's ended episodes join the reward player's samples the
  same way, and PPO bootstraps them with that state's learned reward over the remaining
  steps instead of 0. Otherwise the sign of the learned reward would decide whether
  ending early pays (imitation's AIRL/GAIL users meet this as a "survival bonus" or a
  "suicide" policy: its #84, #279, #310; DAC's absorbing states answer it the same way).

Outputs in OUT: ``reward/`` (``iltk.rewards``: `iltk ppo --reward OUT/reward` trains a fresh
policy on it), ``policy/`` (the last policy; `iltk eval` and `iltk replay --policy` load
it), ``last/`` (PPO's training state), metrics.csv, tb/ and plots/, among them the learned
reward as a heatmap over the task's plane with demonstrations drawn on it.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import torch

from iltk.algos.ppo import state_keys
from iltk.algos.settings import IRLConfig, RewardPlayerSettings
from iltk.data import DatasetError, DemoFile
from iltk.envs import make_env
from iltk.files import atomic_write, atomic_write_text, write_bytes
from iltk.rewards import RewardConfig, RewardNet
from iltk.rl.ppo import Callback, CriticWarmup
from iltk.rl.rewards import Absorbing, LearnedReward

REWARD_METRICS = ["reward_expert", "reward_policy", "reward_gap", "reward_loss"]


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class Demonstrations:
    """The demonstrations as the reward player sees them: states (and actions), flattened."""

    states: np.ndarray  # (n, obs_dim) float32
    actions: np.ndarray  # (n, action_dim) float32
    episodes: list[np.ndarray]  # each episode's states (padded), for plots
    seeds: list[int | None]  # each episode's reset seed (None: unknown)
    padded: int  # states added by padding ended episodes to the horizon
    env_kwargs: dict  # the file's env settings (init_spread, ...)
    next_states: np.ndarray | None = None  # (n, obs_dim): the state each step led to
    acted: np.ndarray | None = None  # (n,) bool: a recorded step (False: padding)

    def __post_init__(self):
        if self.next_states is None:  # built without them: each state held
            self.next_states = self.states
        if self.acted is None:
            self.acted = np.ones(len(self.states), bool)


def dataset_task(path: Path) -> str:
    """The task an episode file was recorded on (a clear error when it does not say)."""
    with DemoFile(path, validate="structure") as f:
        if not f.env_name:
            raise DatasetError(path, "does not name its task (data.attrs['env_args']); pass --task")
        return f.env_name


def load_demonstrations(
    path: Path,
    task: str,
    *,
    limit: int = 0,
    horizon: int | None = None,
    keys: tuple[str, ...] | list[str] = ("state",),
) -> Demonstrations:
    """The first ``limit`` episodes (0: all) of ``path``, each step's observation the values
    of ``keys`` flattened and concatenated in that order (PPO's order for a task with a
    dict of observations, e.g. the Panda tasks'). Episodes that ended before ``horizon``
    are padded with their final state (the one after their last action) up to it: an ended
    episode is its final state held, as the policy's are in the game."""
    with DemoFile(path) as f:
        if f.env_name and f.env_name != task:
            raise DatasetError(
                path, f"holds {f.env_name} episodes, not {task}: pass the task's own demos"
            )
        names = f.demos[:limit] if limit else f.demos
        if not names:
            raise DatasetError(path, "holds no episodes")
        if limit and len(f.demos) < limit:
            raise DatasetError(path, f"holds {len(f.demos)} episodes, fewer than --demos {limit}")
        env_kwargs = dict(f.env_args.get("env_kwargs") or {})
        states, actions, nexts, acted, episodes, seeds, padded = [], [], [], [], [], [], 0
        for name in names:
            missing = [k for k in keys if k not in f.obs_keys(name)]
            if missing:
                raise DatasetError(
                    path,
                    f"has no obs/{', obs/'.join(missing)}: IRL here learns from the task's "
                    f"state observations ({', '.join(keys)})",
                    demo=name,
                )
            obs = _concat([f.read(name, f"obs/{k}") for k in keys])
            nxt = _concat([f.read(name, f"next_obs/{k}") for k in keys])
            final = nxt[-1:]
            act = f.read(name, "actions").astype(np.float32).reshape(len(obs), -1)
            attrs = f.demo_attrs(name)
            real = np.ones(len(obs), bool)
            # an episode shorter than the time limit ended in the MDP (by success, or a
            # fall): its final state is held to the horizon (recordings cut short by a
            # person are marked partial and taken as they are)
            if horizon is not None and not attrs.get("partial") and len(obs) < horizon:
                extra = horizon - len(obs)
                padded += extra
                obs = np.concatenate([obs, np.repeat(final, extra, 0)])
                nxt = np.concatenate([nxt, np.repeat(final, extra, 0)])
                act = np.concatenate([act, np.zeros((extra, act.shape[1]), np.float32)])
                real = np.concatenate([real, np.zeros(extra, bool)])
            states.append(obs)
            actions.append(act)
            nexts.append(nxt)
            acted.append(real)
            episodes.append(obs)
            seeds.append(int(attrs["seed"]) if "seed" in attrs else None)
    return Demonstrations(
        np.concatenate(states),
        np.concatenate(actions),
        episodes,
        seeds,
        padded,
        env_kwargs,
        np.concatenate(nexts),
        np.concatenate(acted),
    )


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """Per-step values of several observation keys, flattened and side by side."""
    return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1).astype(np.float32)


# ---------------------------------------------------------------------- the reward player
class RewardPlayer(LearnedReward, Callback):
    """The reward player of the game, composed with PPO from outside: PPO's reward source
    (the live network's reward, of the class ``--reward.kind``; an ended episode is an
    absorbing state, its final state held to the horizon) and a callback (its move after
    PPO's updates, on the steps the rewards were asked for; its network saved at each
    checkpoint).

    ``game``: ``primal`` moves the reward after every PPO update (both players no-regret,
    GAIL's schedule); ``dual`` lets the policy play a best response first, ``best_response``
    PPO updates on the fixed reward warm-started from the last policy, then moves the
    reward on the samples of the policy it reached (MaxEnt IRL's schedule)."""

    outputs = ("reward", "policy")
    metrics = ("learned_reward", "reward_moved", *REWARD_METRICS)

    def __init__(
        self,
        cfg: IRLConfig,
        demos: Demonstrations,
        device,
        horizon: int | None = None,
        initial: dict | None = None,
    ):
        super().__init__(None)
        self.cfg, self.settings = cfg, cfg.reward
        self.initial = initial  # another run's reward-player state (--init-reward)
        self.demos = demos
        self.horizon = horizon
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.replay: collections.deque = collections.deque(maxlen=cfg.reward.replay)
        self.updates = 0  # the reward player's moves
        self.policy_updates = 0  # PPO updates since the reward last moved
        self.last_logs: dict = {}
        # this rollout's samples: the compared steps' states, executed actions and next
        # states, and the ended episodes' held final states
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.nexts: list[np.ndarray] = []
        self.held: list[np.ndarray] = []
        # the reward player compares the demonstrations with policy episodes that start
        # where they did: goals and layouts are then the same on both sides, and the
        # reward cannot tell them apart by what the policy does not control (with fresh
        # layouts, 16 demos' 16 goals alone separate the two sets)
        known = bool(demos.seeds) and all(s is not None for s in demos.seeds)
        demo_starts = cfg.reward.starts == "demos" and known
        self.episode_seeds = list(demos.seeds) if demo_starts else None

    @property
    def moves_every(self) -> int:
        """PPO updates per move of the reward player."""
        return self.cfg.best_response if self.cfg.game == "dual" else 1

    def prepare(self, obs_dim: int, action_dim: int, horizon: int | None = None) -> None:
        """Build the reward network once the task's sizes are known (checked against the demos)."""
        st = self.settings
        if self.demos.states.shape[1] != obs_dim:
            raise ValueError(
                f"{self.cfg.dataset}: its observations have {self.demos.states.shape[1]} values, "
                f"the task's {obs_dim}: demos of another task or observation mode?"
            )
        if st.kind == "sa" and self.demos.actions.shape[1] != action_dim:
            raise ValueError(
                f"{self.cfg.dataset}: its actions have {self.demos.actions.shape[1]} values, "
                f"the task's {action_dim}"
            )
        torch.manual_seed(self.cfg.seed + 1)
        config = RewardConfig(
            obs_dim=obs_dim,
            action_dim=action_dim,
            hidden=list(st.hidden),
            kind=st.kind,
            gamma=self.cfg.ppo.gamma,
            inputs=None if st.inputs is None else list(st.inputs),
        )
        self.net = RewardNet(config).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=st.lr)
        if self.initial is not None:
            theirs = self.initial.get("config") or {}
            ours = dataclasses.asdict(config)
            differ = [
                f"--reward.{k} {theirs[k]} there, {ours[k]} here"
                for k in ("kind", "hidden", "inputs")
                if k in theirs and theirs[k] != ours[k]
            ]
            if differ:
                raise ValueError(
                    f"--init-reward {self.cfg.init_reward}: another reward network "
                    f"({'; '.join(differ)}); pass that run's settings"
                )
            try:
                self.load_state_dict(self.initial)
            except (RuntimeError, ValueError, KeyError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise ValueError(
                    f"--init-reward {self.cfg.init_reward}: its reward player does not fit "
                    f"this one ({first[:160]}); pass that run's --reward.kind, "
                    "--reward.hidden and --reward.inputs"
                ) from None
            for group in self.opt.param_groups:
                group["lr"] = st.lr  # this run's step; the moments go on
        as_tensor = lambda x: torch.as_tensor(x, device=self.device)  # noqa: E731
        self.expert_s = as_tensor(self.demos.states)
        self.expert_a = as_tensor(self.demos.actions)
        self.expert_n = as_tensor(self.demos.next_states)

    # ----------------------------------------------------------- as a reward source
    def rewards(self, transition, states, next_states):
        compared = np.asarray(transition.episode_index) >= 0
        self.states.append(states[compared].astype(np.float32))
        self.actions.append(transition.control.executed[compared].astype(np.float32))
        self.nexts.append(next_states[compared].astype(np.float32))
        return super().rewards(transition, states, next_states)

    def absorbing(self, transition, ended, final_states, steps_done):
        """An ended episode is its final state held to the horizon, as the demonstrations
        are: its value is that state's learned reward for the remaining steps, so ending
        neither pays nor costs in itself; the held states join the reward player's samples."""
        r_final = self.held_rewards(final_states)
        if self.horizon is None:  # no horizon: held forever
            return Absorbing(r_final, None)
        left = self.horizon - np.asarray(steps_done)
        compared = np.asarray(transition.episode_index)[ended] >= 0
        for state, k in zip(final_states, np.where(compared, left, 0)):
            if k > 0:
                self.held.append(np.repeat(state[None].astype(np.float32), int(k), 0))
        return Absorbing(r_final, left)

    # ---------------------------------------------------------------- as a callback
    def on_update_end(self, ppo) -> dict:
        self.policy_updates += 1
        if self.policy_updates < self.moves_every:
            # the dual's best response goes on: the reward stays where it is; only the
            # samples of the policy it ends with are compared
            self.states, self.actions, self.nexts, self.held = [], [], [], []
            return {**self.last_logs, "reward_moved": 0.0}
        self.policy_updates = 0
        states, actions, nexts = (
            np.concatenate(self.states),
            np.concatenate(self.actions),
            np.concatenate(self.nexts),
        )
        self.states, self.actions, self.nexts = [], [], []
        self.last_logs = self.update(states, actions, nexts)
        return {**self.last_logs, "reward_moved": 1.0}

    def on_checkpoint(self, out: Path) -> None:
        self.save(out)

    def state_dict(self) -> dict:
        """The game's reward side for --resume: the network, its optimizer, its generator
        and its replay of recent policy samples."""
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "updates": self.updates,
            "policy_updates": self.policy_updates,
            "generator": self.gen.get_state(),
            "replay": list(self.replay),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.updates = state["updates"]
        self.policy_updates = state.get("policy_updates", 0)
        gen = state["generator"]
        self.gen.set_state(gen if self.device.type == "cuda" else gen.cpu())
        self.replay.clear()
        self.replay.extend(state["replay"])

    def update(
        self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray | None = None
    ) -> dict:
        """The reward player's move: ``updates`` Adam steps on :func:`reward_player_loss`,
        the demonstrations against the policy samples of the last ``replay`` moves."""
        net, st = self.net, self.settings
        assert net is not None, "prepare() first"
        if next_states is None:
            next_states = states
        if self.held:
            held = np.concatenate(self.held)
            states = np.concatenate([states, held])
            actions = np.concatenate([actions, np.zeros((len(held), actions.shape[1]), np.float32)])
            next_states = np.concatenate([next_states, held])
            self.held = []
        self.replay.append((states.copy(), actions.copy(), next_states.copy()))
        pol = [
            torch.as_tensor(np.concatenate([r[i] for r in self.replay]), device=self.device)
            for i in range(3)
        ]
        if self.updates == 0:
            # one normalization for the whole game: the demonstrations and the first
            # rollout together (a quantity the demos hold constant, e.g. one demo's goal,
            # still gets the spread the policy's episodes give it)
            both = torch.cat([self.expert_s, pol[0]])
            net.set_obs_stats(both.mean(0).cpu(), both.std(0).clamp_min(1e-3).cpu())
        expert = (self.expert_s, self.expert_a, self.expert_n)
        net.train()
        B = st.batch
        for _ in range(st.updates):
            ie = torch.randint(len(self.expert_s), (B,), device=self.device, generator=self.gen)
            ip = torch.randint(len(pol[0]), (B,), device=self.device, generator=self.gen)
            loss, _ = reward_player_loss(
                net, [x[ie] for x in expert], [x[ip] for x in pol], st, self.gen
            )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        net.eval()
        self.updates += 1
        with torch.no_grad():  # on the newest rollout alone: what the policy does now
            now = [torch.as_tensor(x, device=self.device) for x in (states, actions, next_states)]
            r_now = net(*now).mean()
            r_exp = net(*expert).mean()
        return {
            "reward_expert": float(r_exp),
            "reward_policy": float(r_now),
            "reward_gap": float(r_exp - r_now),
            "reward_loss": float(loss.detach()),
        }

    def save(self, out: Path) -> None:
        assert self.net is not None
        self.net.save(
            Path(out) / "reward",
            {"task": self.cfg.task, "dataset": str(self.cfg.dataset), "updates": self.updates},
        )


def reward_player_loss(
    net: RewardNet,
    expert: list[torch.Tensor],
    policy: list[torch.Tensor],
    st: RewardPlayerSettings,
    gen: torch.Generator | None = None,
    weights: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reward player's loss and the moment gap it ascends: ``(loss, gap)``.

    ``expert`` and ``policy``: (states, actions, next states) batches. The gap is
    E_demo[r] - E_policy[r] (MaxEnt IRL's gradient, E_demo[grad r] - E_policy[grad r], is
    its gradient), as sample means or, with ``weights`` (one per row of each side, e.g.
    exact visitation frequencies), as weighted sums. The loss is -gap plus:

    - ``l2`` (mean r_demo^2 + mean r_policy^2): keeps the rewards bounded once the two
      sets separate;
    - ``aula`` sum w^2 over the output layers' weights: the quadratic penalty on the
      Lagrange multipliers of the game (an augmented Lagrangian) for the misspecified case,
      where no policy of the class matches the expert's moments;
    - ``grad_penalty`` (|grad r| - 1)^2 at random points between demo and policy samples
      (WGAN-GP's): a 1-Lipschitz reward, a slope from the policy's states up to the
      demonstrations' rather than a step at their border that gives PPO nothing to climb.
    """
    r_e, r_p = net(*expert), net(*policy)
    if weights is None:
        e_e, e_p = r_e.mean(), r_p.mean()
        sq = r_e.square().mean() + r_p.square().mean()
    else:
        w_e, w_p = weights
        e_e, e_p = (w_e * r_e).sum(), (w_p * r_p).sum()
        sq = (w_e * r_e.square()).sum() + (w_p * r_p.square()).sum()
    gap = e_e - e_p
    loss = -gap
    if st.l2 > 0:
        loss = loss + st.l2 * sq
    if st.aula > 0:
        loss = loss + st.aula * sum(m.weight.square().sum() for m in net.last_layers())
    if st.grad_penalty > 0:
        loss = loss + st.grad_penalty * _gradient_penalty(net, expert, policy, gen)
    return loss, gap


def _gradient_penalty(net: RewardNet, expert, policy, gen) -> torch.Tensor:
    """(|grad r| - 1)^2 at random points between demo and policy samples, in the network's
    normalized inputs (states, and actions or next states where the reward takes them)."""
    s_e = expert[0]
    u = torch.rand(len(s_e), 1, device=s_e.device, generator=gen)
    mix = [None if e is None else (u * e + (1 - u) * p) for e, p in zip(expert, policy)]
    kind = net.config.kind
    x = net.normalize(mix[0]).requires_grad_(True)
    inputs = [x]
    if kind == "sa":
        a = mix[1].requires_grad_(True)
        inputs.append(a)
        r = net.net(torch.cat([x, a], -1)).squeeze(-1)
    elif kind in ("ss", "shaped"):
        x2 = net.normalize(mix[2]).requires_grad_(True)
        inputs.append(x2)
        if kind == "ss":
            r = net.net(torch.cat([x, x2], -1)).squeeze(-1)
        else:
            h = net.h
            r = net.net(x).squeeze(-1) + net.config.gamma * h(x2).squeeze(-1) - h(x).squeeze(-1)
    else:
        r = net.net(x).squeeze(-1)
    grads = torch.autograd.grad(r.sum(), inputs, create_graph=True)
    norm = torch.cat([g.flatten(1) for g in grads], 1).norm(dim=1)
    return (norm - 1).square().mean()


def ppo_inputs(ppo, states: np.ndarray) -> np.ndarray:
    """States as PPO's actor reads them: through PPO's running normalization, clipped as
    the policy clips (unchanged where PPO does not normalize, e.g. a fine-tuned BC
    policy that keeps its own)."""
    if ppo.obs_rms is None:
        return states
    z = (states - ppo.obs_rms.mean) / np.sqrt(ppo.obs_rms.var + 1e-8)
    clip = ppo.policy.config.obs_clip
    return np.clip(z, -clip, clip)


class BCWarmStart(Callback):
    """The policy player starts as behaviour cloning of the same demonstrations: before the
    first rollout, PPO's actor is fitted to the demos' (state, action) pairs by MSE on the
    normalization PPO will use (its running statistics start at the demonstrations'),
    and its log std is set to the fit's residual per action (at least ``min_std``), the
    maximum-likelihood Gaussian around the fit."""

    metrics = ("bc_loss",)

    def __init__(
        self,
        demos: Demonstrations,
        steps: int,
        lr: float = 1e-3,
        batch: int = 256,
        seed: int = 0,
        min_std: float = 0.1,
    ):
        self.demos, self.steps, self.lr, self.batch = demos, steps, lr, batch
        self.seed, self.min_std = seed, min_std
        self.loss: float | None = None

    def on_train_start(self, ppo) -> None:
        if self.steps <= 0:
            return
        policy = ppo.policy
        s = self.demos.states[self.demos.acted].astype(np.float64)
        a = self.demos.actions[self.demos.acted].astype(np.float32)
        if ppo.obs_rms is not None:
            ppo.obs_rms.mean, ppo.obs_rms.var = s.mean(0), s.var(0)
            ppo.obs_rms.count = float(len(s))
        z = ppo_inputs(ppo, s)
        device = next(policy.parameters()).device
        z_t = torch.as_tensor(z, dtype=torch.float32, device=device)
        a_t = torch.as_tensor(a, device=device)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        opt = torch.optim.Adam(policy.actor.parameters(), lr=self.lr)
        policy.train()
        for _ in range(self.steps):
            i = torch.randint(len(z_t), (min(self.batch, len(z_t)),), generator=gen, device=device)
            loss = (policy.actor(z_t[i]) - a_t[i]).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        policy.eval()
        with torch.no_grad():
            residual = (policy.actor(z_t) - a_t).square().mean(0).sqrt()
            policy.log_std.copy_(residual.clamp_min(self.min_std).log())
            self.loss = float((policy.actor(z_t) - a_t).square().mean())

    def on_update_end(self, ppo) -> dict:
        return {"bc_loss": self.loss}


class BCRegularizer(Callback):
    """A behaviour-cloning term in the policy player's loss (GAIL + BC, Jena et al. 2020;
    DAPG's demonstration term, Rajeswaran et al. 2017): ``weight`` * ``decay``^k times the
    squared error of PPO's actor mean on a minibatch of the demonstrations' (state,
    action) pairs at rollout k, the states normalized as PPO normalizes them now. ``loss``
    is PPO's auxiliary loss; the callback tracks the rollout and logs the term."""

    metrics = ("bc_reg", "bc_reg_weight")

    def __init__(
        self, demos: Demonstrations, weight: float, decay: float = 1.0, batch: int = 64, seed=0
    ):
        self.weight0, self.decay, self.batch = weight, decay, batch
        self.states = demos.states[demos.acted].astype(np.float64)
        self.actions = demos.actions[demos.acted].astype(np.float32)
        self.gen = np.random.default_rng(seed + 2)
        self.ppo = None
        self.sums: list[torch.Tensor] = []

    @property
    def weight(self) -> float:
        k = self.ppo.iterations if self.ppo is not None else 0
        return self.weight0 * self.decay**k

    def on_update_start(self, ppo) -> None:
        self.ppo = ppo

    def loss(self, obs, mean, log_std) -> torch.Tensor:
        ppo, w = self.ppo, self.weight
        if ppo is None or w <= 0:
            return torch.zeros((), device=mean.device)
        i = self.gen.integers(len(self.states), size=min(self.batch, len(self.states)))
        z = torch.as_tensor(
            ppo_inputs(ppo, self.states[i]), dtype=torch.float32, device=mean.device
        )
        a = torch.as_tensor(self.actions[i], device=mean.device)
        bc = (ppo.policy.actor(z) - a).square().mean()
        self.sums.append(bc.detach())
        return w * bc

    def on_update_end(self, ppo) -> dict:
        out = {
            "bc_reg": float(torch.stack(self.sums).mean()) if self.sums else None,
            "bc_reg_weight": self.weight,
        }
        self.sums.clear()
        return out


# ----------------------------------------------------------------------------- plots
def reward_heatmap(
    net: RewardNet, task: str, demos: Demonstrations, path: Path, panels: int = 3, grid: int = 60
) -> Path | None:
    """The learned reward over the task's plane (``MujocoTaskEnv.heatmap_*``) in the scenes
    of the first ``panels`` demonstrations, each with its trajectory drawn; None when the
    task has no heatmap."""
    env = make_env(task, **demos.env_kwargs)
    try:
        u = env.unwrapped
        if not getattr(u, "heatmap_label", ""):
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = [i for i, s in enumerate(demos.seeds) if s is not None][:panels]
        if not shown:
            return None
        fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.8), squeeze=False)
        for ax, i in zip(axes[0], shown):
            env.reset(seed=demos.seeds[i])
            x0, x1, y0, y1 = u.heatmap_extent()
            xs, ys = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
            obs = u.heatmap_observations(xs, ys).reshape(grid * grid, -1)
            c = net.config
            # r(s, 0) for a state-action reward, r(s, s) (the state held) for r(s, s'),
            # g(s) for a shaped one
            actions = np.zeros((len(obs), c.action_dim)) if c.uses_action else None
            r = net.rewards(obs, actions, obs if c.uses_next else None, part="g")
            r = r.reshape(grid, grid)
            im = ax.imshow(
                r, origin="lower", extent=(x0, x1, y0, y1), cmap="viridis", aspect="equal"
            )
            xy = demos.episodes[i][:, u.heatmap_obs_xy]
            ax.plot(xy[:, 0], xy[:, 1], color="white", lw=1.5, label="demonstration")
            ax.plot(xy[-1, 0], xy[-1, 1], "*", color="red", ms=12, label="its end")
            ax.set(title=f"demo {i} (seed {demos.seeds[i]})", xlabel="x (m)", ylabel="y (m)")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="learned reward")
        axes[0][0].legend(loc="lower left", fontsize=7)
        fig.suptitle(f"{task}: learned reward over the {u.heatmap_label}", fontsize=10)
        fig.tight_layout()
        return _save_figure(fig, path)
    finally:
        env.close()


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    data = io.BytesIO()
    fig.savefig(data, dpi=110, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: write_bytes(tmp, data.getvalue()), durable=False)
    return path


# ----------------------------------------------------------------------------- commands
FINETUNE_CRITIC_LR = 1e-3


def start_policy(cfg: IRLConfig):
    """The policy player as fine-tuning of the BC checkpoint ``--init-policy`` (as
    `iltk finetune` builds it, its defaults for the std's bounds and the critic)."""
    from iltk.algos.settings import FinetuneSettings
    from iltk.policies import load_checkpoint
    from iltk.policies.tuned import FinetunePolicy

    base, extra = load_checkpoint(cfg.init_policy)
    name = type(base).name
    if name != "bc":
        raise ValueError(
            f"--init-policy {cfg.init_policy}: a {name!r} policy; the policy player starts from "
            "an MLP BC checkpoint (iltk train --algo bc)"
        )
    if base.config.image_shapes:
        raise ValueError(
            f"--init-policy {cfg.init_policy}: a policy on images; IRL here needs states"
        )
    if extra.get("task") and extra["task"] != cfg.task:
        raise ValueError(
            f"--init-policy {cfg.init_policy}: trained on {extra['task']}, not {cfg.task}"
        )
    d = {f.name: f.default for f in dataclasses.fields(FinetuneSettings)}
    return FinetunePolicy.from_base(
        base,
        name,
        critic_hidden=list(FinetuneSettings().critic_hidden),
        log_std_init=d["log_std_init"],
        min_log_std=d["min_log_std"],
        max_log_std=d["max_log_std"],
    )


def start_reward(cfg: IRLConfig) -> dict:
    """The reward player's state in the run folder ``--init-reward`` names (the training
    state of its last checkpoint)."""
    run = Path(cfg.init_reward)
    path = run / "last" / "train_state.pt"
    if not path.is_file():
        raise ValueError(
            f"--init-reward {run}: no {path}; pass the folder of an `iltk irl` run on a "
            "MuJoCo task (its --out) that has saved a checkpoint"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a damaged or foreign file: one line
        text = str(err).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
        raise ValueError(
            f"--init-reward {run}: {path} is damaged ({first[:160]}); pass another run"
        ) from None
    found = [
        s
        for s in (state.get("callbacks") or [] if isinstance(state, dict) else [])
        if isinstance(s, dict) and {"net", "opt", "replay"} <= s.keys()
    ]
    if not found:
        raise ValueError(
            f"--init-reward {run}: its checkpoint holds no reward player (a run of another "
            "command: train, ppo, finetune?); pass the folder of an `iltk irl` run"
        )
    saved_cfg = run / "config.json"
    if saved_cfg.is_file():
        task = json.loads(saved_cfg.read_text()).get("task")
        if task and task != cfg.task:
            raise ValueError(f"--init-reward {run}: a run on {task}, not {cfg.task}")
    network = run / "reward" / "config.json"  # the network's shape, to name a mismatch
    config = json.loads(network.read_text()).get("config") if network.is_file() else None
    return {**found[0], "config": config}


def train_deep_irl(cfg: IRLConfig) -> dict:
    from iltk.algos.ppo import train_ppo
    from iltk.policies import load_policy, resolve_device

    with DemoFile(cfg.dataset, validate="none") as f:
        file_kwargs = dict(f.env_args.get("env_kwargs") or {})
    probe = make_env(cfg.task, **file_kwargs)
    try:
        horizon = probe.spec.max_episode_steps if probe.spec is not None else None
        keys = state_keys(probe.observation_space)  # what PPO reads, in its order
    finally:
        probe.close()
    demos = load_demonstrations(cfg.dataset, cfg.task, limit=cfg.demos, horizon=horizon, keys=keys)
    start = start_policy(cfg) if cfg.init_policy is not None else None
    initial = start_reward(cfg) if cfg.init_reward is not None else None
    player = RewardPlayer(cfg, demos, resolve_device(cfg.device), horizon, initial)
    callbacks: list[Callback] = [player]
    if cfg.warm_start == "bc" and start is None:
        callbacks.append(BCWarmStart(demos, cfg.bc_steps, seed=cfg.seed))
    if cfg.critic_warmup:
        callbacks.append(CriticWarmup(cfg.critic_warmup))
    aux_losses = []
    if cfg.bc_weight > 0:
        reg = BCRegularizer(demos, cfg.bc_weight, cfg.bc_decay, seed=cfg.seed)
        callbacks.append(reg)
        aux_losses.append(reg.loss)
    res = train_ppo(
        cfg.ppo_config(cfg.task),
        policy=start,
        critic_lr=FINETUNE_CRITIC_LR if start is not None else None,
        env_kwargs=demos.env_kwargs,
        reward=player,
        callbacks=callbacks,
        aux_losses=aux_losses,
        episode_seeds=player.episode_seeds,
        choose_best=False,  # the learner never sees the env's reward: no best/ chosen by it
        run_config=dataclasses.asdict(cfg),
    )
    # policy/: the last policy as an ordinary checkpoint (no training state)
    policy = load_policy(cfg.out / "last")
    policy.save(
        cfg.out / "policy",
        {"task": cfg.task, "env_kwargs": demos.env_kwargs, "source": "iltk irl"},
    )
    heatmap = reward_heatmap(player.net, cfg.task, demos, cfg.out / "plots" / "reward_heatmap.png")
    res.update(
        demos=len(demos.episodes),
        demo_states=len(demos.states),
        padded_states=demos.padded,
        reward=str(cfg.out / "reward"),
        policy=str(cfg.out / "policy"),
    )
    if heatmap is not None:
        res["plots"].append(str(heatmap))
    atomic_write_text(cfg.out / "results.json", json.dumps(res, indent=2, default=str))
    return res


__all__ = [
    "BCRegularizer",
    "BCWarmStart",
    "Demonstrations",
    "RewardPlayer",
    "dataset_task",
    "load_demonstrations",
    "reward_heatmap",
    "reward_player_loss",
    "start_reward",
    "train_deep_irl",
]
