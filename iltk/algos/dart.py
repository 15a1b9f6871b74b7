"""DART: Disturbances for Augmenting Robot Trajectories (Laskey et al. 2017).

The supervisor demonstrates under injected noise, ``executed = pi*(x) + N(0, Sigma)``, and
the recorded label stays the clean ``pi*(x)``: the data then covers the states the
learner's own errors lead to, with the corrective labels. Sigma is chosen to match the
learner's errors: before each round it is re-estimated as the maximum-likelihood
covariance of the learner's error on the states the noisy supervisor visited,

    Sigma_k = scale * mean_t (pi_theta(x_t) - pi*(x_t)) (pi_theta(x_t) - pi*(x_t))^T,

(the Gaussian case of the lecture's psi_{k+1} = argmin E[-sum_t log pi*(pi_theta(x_t) | x_t, psi)]).
Round 0 uses ``init_noise`` (0: clean demonstrations).

The error must be the learner's error on states it was NOT trained on: its training error
on last round's episodes is near zero once it fits them (on Push it gave noise std 0.001,
i.e. no noise at all). So Sigma_k is measured with the policy trained before round k-1's
episodes were added, on those episodes; for round 1 a probe policy is trained on four
fifths of the round-0 demonstrations and measured on the remaining fifth.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from iltk.algos.rounds import RoundRunner, fit, policy_errors
from iltk.algos.settings import DartConfig
from iltk.controllers import DartNoise, ExpertController
from iltk.data import DemoFile
from iltk.data.tools import copy_demos
from iltk.rollout import Episode


def estimate_covariance(errors: np.ndarray, scale: float = 1.0, max_std: float = 1.0) -> np.ndarray:
    """The MLE covariance of zero-mean Gaussian errors, scaled, with each std capped."""
    errors = np.asarray(errors, dtype=np.float64)
    cov = scale * errors.T @ errors / max(len(errors), 1)
    std = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    cap = np.minimum(std, max_std) / std
    return cov * np.outer(cap, cap)


def held_out_errors(
    cfg: DartConfig, data: Path, episodes: list[Episode], probe_file: Path, policy
) -> np.ndarray:
    """The errors of a probe policy trained on about four fifths of ``episodes`` (the round-0
    demonstrations, already in ``data``), measured on the other fifth."""
    held = episodes[-max(1, len(episodes) // 5) :]
    if len(held) == len(episodes):
        # a single demonstration: nothing to hold out, so the training error of ``policy``
        # (an underestimate; use --initial-demos >= 2)
        return policy_errors(policy, episodes)
    held_seeds = {e.seed for e in held}
    with DemoFile(data) as f:
        train = [d for d in f.demos if int(f.demo_attrs(d).get("seed", -1)) not in held_seeds]
        copy_demos([(f, d) for d in train], probe_file)
    try:
        probe = fit(cfg.algo, cfg.learner, probe_file, cfg.task, cfg.seed)
    finally:
        probe_file.unlink(missing_ok=True)
    return policy_errors(probe, held)


def run_dart(cfg: DartConfig, progress: bool = True) -> list[dict]:
    """Run all rounds; returns the per-round rows (also in OUT/rounds.json)."""
    rr = RoundRunner(cfg)
    cov = np.eye(rr.action_dim) * cfg.init_noise**2
    labels = 0
    policy = previous = None
    last_eps: list[Episode] = []
    try:
        for k in range(cfg.rounds + 1):
            if k > 0:
                # the learner's error on the states the (noisy) supervisor visited last round,
                # measured with a policy that has not been trained on them
                errors = (
                    held_out_errors(cfg, rr.data, last_eps, rr.out / "noise_probe.hdf5", policy)
                    if previous is None
                    else policy_errors(previous, last_eps)
                )
                cov = estimate_covariance(errors, cfg.scale, cfg.max_std)
            n_eps = cfg.initial_demos if k == 0 else cfg.episodes_per_round
            controller = DartNoise(ExpertController(), cov, seed=cfg.seed + k)
            last_eps = rr.collect(controller, n_eps, cfg.seed + 10_000 * k, "dart")
            labels += sum(e.length for e in last_eps)
            # a copy: a warm-started fit trains the same module in place
            previous = copy.deepcopy(policy)
            policy = fit(
                cfg.algo,
                cfg.learner,
                rr.data,
                cfg.task,
                cfg.seed + k,
                init=policy if cfg.learner.warm_start else None,
                progress=progress,
            )
            row = rr.finish_round(
                k,
                policy,
                cfg.eval_episodes,
                {
                    "round": k,
                    "episodes": n_eps,
                    "expert_labels": labels,
                    "noise_std": np.sqrt(np.diag(cov)).round(4).tolist(),
                    "noise_trace": float(np.trace(cov)),
                    "supervisor_success": float(np.mean([e.success for e in last_eps])),
                },
            )
            if progress:
                print(
                    f"dart round {k:>2}: noise std {row['noise_std']}, {labels:>6} labels, supervisor "
                    f"success {row['supervisor_success']:.0%}, learner success {row['success_rate']:.0%}"
                )
    finally:
        rr.close(policy, f"DART on {cfg.task}")
    return rr.log.rows
