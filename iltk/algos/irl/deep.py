"""Deep MaxEnt IRL as a game (`iltk irl` on the MuJoCo tasks; ``run.py`` dispatches).

The game of the lecture notes ("IRL as a game"): a reward player and a policy player.

- The policy player is PPO (``iltk.rl.ppo``, run by ``iltk.algos.ppo.train_ppo``), with an entropy bonus on the current
  reward: an approximate soft best response.
- The reward player is an MLP r(s) (or r(s, a)) on the task's observations. MaxEnt IRL's
  gradient is E_demo[grad r] - E_policy[grad r] (expert visitation minus the visitation of
  the soft-optimal policy); the reward player ascends it with Adam on minibatches of the
  demonstrations' states against the states of the last ``replay`` rollouts (past
  policies too: a no-regret player answers the mixture of the policies so far, which
  steadies the game), with an L2 penalty on the rewards of both sets (without it the
  rewards drift without bound once the two sets separate).
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

from iltk.algos.settings import IRLConfig
from iltk.data import DatasetError, DemoFile
from iltk.envs import make_env
from iltk.files import atomic_write, atomic_write_text, write_bytes
from iltk.rewards import RewardConfig, RewardNet
from iltk.rl.ppo import Callback
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


def dataset_task(path: Path) -> str:
    """The task an episode file was recorded on (a clear error when it does not say)."""
    with DemoFile(path, validate="structure") as f:
        if not f.env_name:
            raise DatasetError(path, "does not name its task (data.attrs['env_args']); pass --task")
        return f.env_name


def load_demonstrations(
    path: Path, task: str, *, limit: int = 0, horizon: int | None = None, key: str = "state"
) -> Demonstrations:
    """The first ``limit`` episodes (0: all) of ``path``. Episodes that ended before
    ``horizon`` are padded with their final state (the one after their last action) up to
    it: an ended episode is its final state held, as the policy's are in the game."""
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
        states, actions, episodes, seeds, padded = [], [], [], [], 0
        for name in names:
            try:
                obs = f.read(name, f"obs/{key}").astype(np.float32)
                final = f.read(name, f"next_obs/{key}")[-1:].astype(np.float32)
            except KeyError:
                raise DatasetError(
                    path, f"has no obs/{key}: IRL here learns from state observations", demo=name
                ) from None
            act = f.read(name, "actions").astype(np.float32).reshape(len(obs), -1)
            attrs = f.demo_attrs(name)
            obs = obs.reshape(len(obs), -1)
            final = final.reshape(1, -1)
            # an episode shorter than the time limit ended in the MDP (by success, or a
            # fall): its final state is held to the horizon (recordings cut short by a
            # person are marked partial and taken as they are)
            if horizon is not None and not attrs.get("partial") and len(obs) < horizon:
                extra = horizon - len(obs)
                padded += extra
                obs = np.concatenate([obs, np.repeat(final, extra, 0)])
                act = np.concatenate([act, np.zeros((extra, act.shape[1]), np.float32)])
            states.append(obs)
            actions.append(act)
            episodes.append(obs)
            seeds.append(int(attrs["seed"]) if "seed" in attrs else None)
    return Demonstrations(
        np.concatenate(states), np.concatenate(actions), episodes, seeds, padded, env_kwargs
    )


# ---------------------------------------------------------------------- the reward player
class RewardPlayer(LearnedReward, Callback):
    """The reward player of the game, composed with PPO from outside: PPO's reward source
    (the live network's r(s) or r(s, a); an ended episode is an absorbing state, its final
    state held to the horizon) and a callback (its move after each PPO update, on the
    states the rewards were asked for; its network saved at each checkpoint)."""

    outputs = ("reward", "policy")
    metrics = ("learned_reward", *REWARD_METRICS)

    def __init__(
        self,
        cfg: IRLConfig,
        demos: Demonstrations,
        device,
        horizon: int | None = None,
    ):
        super().__init__(None)
        self.cfg, self.settings = cfg, cfg.reward
        self.demos = demos
        self.horizon = horizon
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.replay: collections.deque = collections.deque(maxlen=cfg.reward.replay)
        self.updates = 0
        # this rollout's samples: the compared steps' states and executed actions, and
        # the ended episodes' held final states
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.held: list[np.ndarray] = []
        # the reward player compares the demonstrations with policy episodes that start
        # where they did: goals and layouts are then the same on both sides, and the
        # reward cannot tell them apart by what the policy does not control (with fresh
        # layouts, 16 demos' 16 goals alone separate the two sets)
        known = bool(demos.seeds) and all(s is not None for s in demos.seeds)
        demo_starts = cfg.reward.starts == "demos" and known
        self.episode_seeds = list(demos.seeds) if demo_starts else None

    def prepare(self, obs_dim: int, action_dim: int) -> None:
        """Build the reward network once the task's sizes are known (checked against the demos)."""
        st = self.settings
        if self.demos.states.shape[1] != obs_dim:
            raise ValueError(
                f"{self.cfg.dataset}: its observations have {self.demos.states.shape[1]} values, "
                f"the task's {obs_dim}: demos of another task or observation mode?"
            )
        if not st.state_only and self.demos.actions.shape[1] != action_dim:
            raise ValueError(
                f"{self.cfg.dataset}: its actions have {self.demos.actions.shape[1]} values, "
                f"the task's {action_dim}"
            )
        torch.manual_seed(self.cfg.seed + 1)
        config = RewardConfig(
            obs_dim=obs_dim,
            action_dim=action_dim,
            hidden=list(st.hidden),
            state_only=st.state_only,
        )
        self.net = RewardNet(config).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=st.lr)
        as_tensor = lambda x: torch.as_tensor(x, device=self.device)  # noqa: E731
        self.expert_s = as_tensor(self.demos.states)
        self.expert_a = as_tensor(self.demos.actions)

    # ----------------------------------------------------------- as a reward source
    def rewards(self, transition, states):
        compared = np.asarray(transition.episode_index) >= 0
        self.states.append(states[compared].astype(np.float32))
        self.actions.append(transition.control.executed[compared].astype(np.float32))
        return super().rewards(transition, states)

    def absorbing(self, transition, ended, final_states, steps_done):
        """An ended episode is its final state held to the horizon, as the demonstrations
        are: its value is that state's learned reward for the remaining steps, so ending
        neither pays nor costs in itself; the held states join the reward player's samples."""
        actions = (
            None
            if self.net.config.state_only
            else np.zeros((len(ended), self.net.config.action_dim))
        )
        r_final = self.net.rewards(final_states, actions)
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
        states, actions = np.concatenate(self.states), np.concatenate(self.actions)
        self.states, self.actions = [], []
        return self.update(states, actions)

    def on_checkpoint(self, out: Path) -> None:
        self.save(out)

    def state_dict(self) -> dict:
        """The game's reward side for --resume: the network, its optimizer, its generator
        and its replay of recent policy samples."""
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "updates": self.updates,
            "generator": self.gen.get_state(),
            "replay": list(self.replay),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.updates = state["updates"]
        gen = state["generator"]
        self.gen.set_state(gen if self.device.type == "cuda" else gen.cpu())
        self.replay.clear()
        self.replay.extend(state["replay"])

    def update(self, states: np.ndarray, actions: np.ndarray) -> dict:
        """The reward player's move after a PPO update: ``updates`` Adam steps on
        mean r(policy) - mean r(demos) + l2 (mean r(demos)^2 + mean r(policy)^2)."""
        net, st = self.net, self.settings
        assert net is not None, "prepare() first"
        if self.held:
            held = np.concatenate(self.held)
            states = np.concatenate([states, held])
            actions = np.concatenate([actions, np.zeros((len(held), actions.shape[1]), np.float32)])
            self.held = []
        self.replay.append((states.copy(), actions.copy()))
        pol_s = torch.as_tensor(np.concatenate([s for s, _ in self.replay]), device=self.device)
        pol_a = torch.as_tensor(np.concatenate([a for _, a in self.replay]), device=self.device)
        if self.updates == 0:
            # one normalization for the whole game: the demonstrations and the first
            # rollout together (a quantity the demos hold constant, e.g. one demo's goal,
            # still gets the spread the policy's episodes give it)
            both = torch.cat([self.expert_s, pol_s])
            net.set_obs_stats(both.mean(0).cpu(), both.std(0).clamp_min(1e-3).cpu())
        net.train()
        B = st.batch
        for _ in range(st.updates):
            ie = torch.randint(len(self.expert_s), (B,), device=self.device, generator=self.gen)
            ip = torch.randint(len(pol_s), (B,), device=self.device, generator=self.gen)
            r_e = net(self.expert_s[ie], None if st.state_only else self.expert_a[ie])
            r_p = net(pol_s[ip], None if st.state_only else pol_a[ip])
            gap = r_e.mean() - r_p.mean()
            loss = -gap + st.l2 * (r_e.square().mean() + r_p.square().mean())
            if st.grad_penalty > 0:
                loss = loss + st.grad_penalty * self._gradient_penalty(
                    self.expert_s[ie], pol_s[ip], self.expert_a[ie], pol_a[ip]
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        net.eval()
        self.updates += 1
        with torch.no_grad():  # on the newest rollout alone: what the policy does now
            r_now = net(
                torch.as_tensor(states, device=self.device),
                None if st.state_only else torch.as_tensor(actions, device=self.device),
            ).mean()
            r_exp = net(self.expert_s, None if st.state_only else self.expert_a).mean()
        return {
            "reward_expert": float(r_exp),
            "reward_policy": float(r_now),
            "reward_gap": float(r_exp - r_now),
            "reward_loss": float(loss.detach()),
        }

    def _gradient_penalty(self, s_e, s_p, a_e, a_p) -> torch.Tensor:
        """(|grad r| - 1)^2 at random points between demo and policy samples (in the
        network's normalized input), as WGAN-GP: the reward stays 1-Lipschitz, a slope
        from the policy's states up to the demonstrations' instead of a step at their
        border that gives PPO nothing to climb."""
        net = self.net
        u = torch.rand(len(s_e), 1, device=self.device, generator=self.gen)
        x = ((u * s_e + (1 - u) * s_p) - net.obs_mean) / net.obs_std
        x.requires_grad_(True)
        inputs = [x]
        if not self.settings.state_only:
            a = (u * a_e + (1 - u) * a_p).requires_grad_(True)
            inputs.append(a)
            r = net.net(torch.cat([x, a], -1)).squeeze(-1)
        else:
            r = net.net(x).squeeze(-1)
        grads = torch.autograd.grad(r.sum(), inputs, create_graph=True)
        norm = torch.cat([g.flatten(1) for g in grads], 1).norm(dim=1)
        return (norm - 1).square().mean()

    def save(self, out: Path) -> None:
        assert self.net is not None
        self.net.save(
            Path(out) / "reward",
            {"task": self.cfg.task, "dataset": str(self.cfg.dataset), "updates": self.updates},
        )


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
            actions = None if net.config.state_only else np.zeros((len(obs), net.config.action_dim))
            r = net.rewards(obs, actions).reshape(grid, grid)
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
def train_deep_irl(cfg: IRLConfig) -> dict:
    from iltk.algos.ppo import train_ppo
    from iltk.policies import load_policy, resolve_device

    with DemoFile(cfg.dataset, validate="none") as f:
        file_kwargs = dict(f.env_args.get("env_kwargs") or {})
    probe = make_env(cfg.task, **file_kwargs)
    try:
        horizon = probe.spec.max_episode_steps if probe.spec is not None else None
    finally:
        probe.close()
    demos = load_demonstrations(cfg.dataset, cfg.task, limit=cfg.demos, horizon=horizon)
    player = RewardPlayer(cfg, demos, resolve_device(cfg.device), horizon)
    res = train_ppo(
        cfg.ppo_config(cfg.task),
        env_kwargs=demos.env_kwargs,
        reward=player,
        callbacks=[player],
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
    "Demonstrations",
    "RewardPlayer",
    "dataset_task",
    "load_demonstrations",
    "reward_heatmap",
    "train_deep_irl",
]
