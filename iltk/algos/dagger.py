"""DAgger (Ross, Gordon & Bagnell 2011) and HG-DAgger (Kelly et al. 2019), automated.

Round 0 trains on ``initial_demos`` expert demonstrations. Each later round k:

- DAgger: run the mixture pi_k = beta_k * expert + (1 - beta_k) * policy (per step), label
  EVERY visited state with the expert's action, aggregate, retrain;
- HG-DAgger: the policy acts and a simulated human gate (``iltk.controllers.HGDaggerGate``)
  hands control to the expert while the policy strays; only the steps under expert control
  (flagged ``intervention``) are aggregated by default, optionally up-weighted (IWR-style).

Every round is one run of the control loop; episodes are written in the standard format
(``actions`` = label, ``actions_executed`` = what ran) to ``OUT/data.hdf5``. Success is
logged against the number of expert labels: all steps for DAgger, the initial demos plus
the intervention steps for HG-DAgger.
"""

from __future__ import annotations

import numpy as np

from iltk.algos.rounds import RoundRunner, fit
from iltk.algos.settings import DaggerConfig
from iltk.controllers import BetaMixture, ExpertController, HGDaggerGate, PolicyController
from iltk.policies import PolicyRunner


def beta_at(cfg: DaggerConfig, k: int) -> float:
    """The expert-mixing probability of round k >= 1."""
    if cfg.beta_schedule == "linear":
        return max(0.0, 1.0 - k / max(cfg.rounds, 1))
    if cfg.beta_schedule == "exponential":
        return cfg.beta**k
    return cfg.beta


def run_dagger(cfg: DaggerConfig, progress: bool = True) -> list[dict]:
    """Run all rounds; returns the per-round rows (also in OUT/rounds.json)."""
    rr = RoundRunner(cfg, resume=cfg.resume, resumable=True)
    hg = cfg.variant == "hg-dagger"
    uncorrected = 0.0 if hg and cfg.aggregate == "interventions" else 1.0
    # resumed: the counts and the policy of the last completed round
    done = rr.rows[-1] if rr.rows else {}
    labels = int(done.get("expert_labels") or 0)
    interventions = int(done.get("expert_controlled_steps") or 0)
    policy = rr.policy
    try:
        for k in range(len(rr.rows), cfg.rounds + 1):
            seed = cfg.seed + 10_000 * k
            if k == 0:
                controller, beta, source = ExpertController(), 1.0, "scripted"
            else:
                pol = PolicyController(PolicyRunner(policy, rr.envs.num_envs))
                if hg:
                    controller = HGDaggerGate(
                        ExpertController(), pol, cfg.takeover, cfg.handback, cfg.hold
                    )
                    beta, source = float("nan"), "hg-dagger"
                else:
                    beta = beta_at(cfg, k)
                    controller = BetaMixture(ExpertController(), pol, beta, seed=seed)
                    source = "dagger"
            n_eps = cfg.initial_demos if k == 0 else cfg.episodes_per_round
            eps = rr.collect(controller, n_eps, seed, source)
            steps = sum(e.length for e in eps)
            round_interventions = sum(
                int(e.fields["intervention"].sum()) for e in eps if "intervention" in e.fields
            )
            if k == 0 or not hg:
                labels += steps
            else:
                labels += round_interventions
                interventions += round_interventions
            policy = fit(
                cfg.algo,
                cfg.learner,
                rr.data,
                cfg.task,
                cfg.seed + k,
                init=policy if cfg.learner.warm_start else None,
                uncorrected_weight=uncorrected,
                intervention_weight=cfg.intervention_weight,
                progress=progress,
            )
            row = rr.finish_round(
                k,
                policy,
                cfg.eval_episodes,
                {
                    "round": k,
                    "beta": beta,
                    "episodes": n_eps,
                    "steps": steps,
                    "expert_labels": labels,
                    "rollout_success": float(np.mean([e.success for e in eps])),
                    "intervention_fraction": round_interventions / steps
                    if hg and k > 0
                    else (1.0 if k == 0 else None),
                    "expert_controlled_steps": interventions if hg else None,
                },
            )
            if progress:
                extra = (
                    f"interventions {row['intervention_fraction']:.0%}"
                    if hg and k > 0
                    else f"beta {beta:.2f}"
                )
                print(
                    f"{cfg.variant} round {k:>2}: {labels:>6} expert labels, {extra}, "
                    f"success {row['success_rate']:.0%} ({row['ci95_lo']:.0%}-{row['ci95_hi']:.0%})"
                )
    finally:
        rr.close(policy, f"{cfg.variant} on {cfg.task}")
    return rr.log.rows
