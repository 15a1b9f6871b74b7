"""Tabular MaxEnt IRL: iltk against imitation 1.0.1's MCE IRL, same MDPs, same machine.

imitation 1.0.1 needs gymnasium 0.29, so it runs in a venv of its own
(``runs/bench/imitation-venv``, made on first use: torch 2.13.0 first, then imitation); the
two sides exchange arrays through .npz files. For each MDP:

- equal results: V, Q, pi (``mce_partition_fh``) and D, Dcum (``mce_occupancy_measures``)
  for the MDP's true reward, largest absolute difference (aim: <= 1e-6);
- the time of one backward + forward pass, and of one IRL iteration (reward net forward and
  backward, both passes, an Adam step) with the same reward model, learning rate and
  expert occupancy, timed over a fixed number of iterations (best of 3 repeats);
- then MDPs imitation cannot hold (its dense (S, A, S) array): sparse random MDPs of
  10^5 and 10^6 states, iltk's pass time (imitation's array would need S * A * S * 8 bytes).

MDPs: seals' CliffWorld 4x7 (H = 40) with an MLP reward over one-hot states, and random
MDPs (100 and 1,000 states, 4 actions, 5 successors per (s, a), 8 features, H = 50) with a
linear reward.

    python benchmarks/irl.py                       # everything (a few minutes)
    python benchmarks/irl.py --skip-large          # without the 10^5 / 10^6-state MDPs

Writes runs/bench/irl.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iltk.algos.irl.tabular import (  # noqa: E402
    Transitions,
    maxent_irl,
    soft_value_iteration,
    state_visitation,
)

VENV = ROOT / "runs/bench/imitation-venv"

IMITATION_SIDE = textwrap.dedent(
    '''
    """Runs inside the imitation venv: the same MDPs through imitation's MCE IRL."""
    import json, sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np, torch
    from seals.base_envs import TabularModelPOMDP
    from seals.diagnostics.cliff_world import CliffWorldEnv
    from imitation.algorithms import mce_irl
    from imitation.rewards import reward_nets

    torch.set_num_threads(1)
    mode, path_in, path_out = sys.argv[1:4]
    if mode == "cliff":  # export seals' CliffWorld for the other side
        env = CliffWorldEnv(width=7, height=4, horizon=40, use_xy_obs=False)
        np.savez(path_out, P=env.transition_matrix, phi=env.observation_matrix.astype(float),
                 r=env.reward_matrix, init=env.initial_state_dist, H=env.horizon)
        sys.exit(0)
    spec = json.loads(open(path_in + ".json").read())
    data = np.load(path_in)
    out = {}
    for name in spec["mdps"]:
        P, phi, r, init = (data[f"{name}_{k}"] for k in ("P", "phi", "r", "init"))
        H = int(data[f"{name}_H"])
        env = TabularModelPOMDP(transition_matrix=P, observation_matrix=phi, reward_matrix=r,
                                horizon=H, initial_state_dist=init)
        V, Q, pi = mce_irl.mce_partition_fh(env, reward=r)
        D, Dcum = mce_irl.mce_occupancy_measures(env, pi=pi)
        reps = spec["pass_reps"]
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                _, _, p = mce_irl.mce_partition_fh(env, reward=r)
                mce_irl.mce_occupancy_measures(env, pi=p)
            best = min(best, (time.perf_counter() - t0) / reps)
        hid = tuple(spec["hidden"][name])
        iters = spec["irl_iters"]
        best_it = float("inf")
        for rep in range(3):
            torch.manual_seed(rep)
            net = reward_nets.BasicRewardNet(env.observation_space, env.action_space,
                                             hid_sizes=hid, use_action=False,
                                             use_next_state=False, use_done=False)
            irl = mce_irl.MCEIRL(Dcum, env, net, rng=np.random.default_rng(rep),
                                 optimizer_kwargs={"lr": spec["lr"]}, linf_eps=0.0,
                                 grad_l2_eps=0.0, log_interval=None)
            t0 = time.perf_counter()
            irl.train(max_iter=iters)
            best_it = min(best_it, (time.perf_counter() - t0) / iters)
        out.update({f"{name}_V": V, f"{name}_Q": Q, f"{name}_pi": pi, f"{name}_D": D,
                    f"{name}_Dcum": Dcum, f"{name}_pass_s": best, f"{name}_iter_s": best_it})
    np.savez(path_out, **out)
    '''
)


def imitation_python() -> Path:
    py = VENV / "bin/python"
    if not py.exists():
        print(f"making {VENV} (torch 2.13.0, imitation 1.0.1, gymnasium 0.29) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        # gymnasium 0.29's MuJoCo envs too: irl_hopper.py runs GAIL and AIRL on Hopper-v4
        subprocess.run([*pip, "imitation==1.0.1", "gymnasium[mujoco]==0.29.1"], check=True)
    return py


def run_imitation(py: Path, mode: str, path_in: str, path_out: str) -> None:
    subprocess.run([str(py), "-c", IMITATION_SIDE, mode, path_in, path_out], check=True)


def random_mdp(S: int, A: int, successors: int, F: int, seed: int, dense: bool = True):
    """A random MDP: each (s, a) reaches ``successors`` random states with Dirichlet
    probabilities; features N(0, 1); the true reward linear in them."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, S, (S * A, successors))
    probs = rng.dirichlet(np.ones(successors), S * A)
    phi = rng.normal(size=(S, F))
    r = phi @ rng.normal(size=F)
    init = np.zeros(S)
    init[rng.integers(0, S, 10)] = 1.0
    init /= init.sum()
    if dense:
        P = np.zeros((S * A, S))
        np.add.at(P, (np.repeat(np.arange(S * A), successors), cols.ravel()), probs.ravel())
        return P.reshape(S, A, S), phi, r, init
    rows = torch.as_tensor(np.repeat(np.arange(S * A), successors))
    idx = torch.stack([rows, torch.as_tensor(cols.ravel())])
    P = torch.sparse_coo_tensor(idx, torch.as_tensor(probs.ravel()), (S * A, S)).coalesce()
    return P, phi, r, init


def time_passes(P, r, init, H, reps: int) -> float:
    T = P if isinstance(P, Transitions) else Transitions(P)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            _, _, pi = soft_value_iteration(T, r, H)
            state_visitation(T, pi, init, H)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def time_irl(P, phi, init, target, H, hidden, lr, iters) -> float:
    T = Transitions(P)
    best = float("inf")
    for rep in range(3):
        model = "linear" if not hidden else _mlp(phi.shape[1], hidden)
        t0 = time.perf_counter()
        maxent_irl(
            T,
            phi,
            init,
            target,
            horizon=H,
            model=model,
            lr=lr,
            max_iter=iters,
            linf_eps=0.0,
            grad_eps=0.0,
            seed=rep,
        )
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def _mlp(F, hidden):
    layers, inp = [], F
    for h in hidden:
        layers += [torch.nn.Linear(inp, h), torch.nn.ReLU()]
        inp = h
    layers.append(torch.nn.Linear(inp, 1))
    return torch.nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--pass-reps", type=int, default=20)
    parser.add_argument("--irl-iters", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--out", default=str(ROOT / "runs/bench/irl.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    py = imitation_python()
    version = subprocess.run(
        [
            str(py),
            "-c",
            "import imitation, gymnasium; print(imitation.__version__, gymnasium.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    tmp = Path(tempfile.mkdtemp(prefix="iltk_irl_"))
    run_imitation(py, "cliff", "", str(tmp / "cliff.npz"))
    cliff = np.load(tmp / "cliff.npz")
    mdps = {
        "cliff_4x7": (
            cliff["P"],
            cliff["phi"],
            cliff["r"],
            cliff["init"],
            int(cliff["H"]),
            [32, 32],
        ),
        "random_100": (*random_mdp(100, 4, 5, 8, seed=0), 50, []),
        "random_1000": (*random_mdp(1000, 4, 5, 8, seed=1), 50, []),
    }
    arrays = {}
    for name, (P, phi, r, init, H, _) in mdps.items():
        arrays.update(
            {
                f"{name}_P": P,
                f"{name}_phi": phi,
                f"{name}_r": r,
                f"{name}_init": init,
                f"{name}_H": H,
            }
        )
    np.savez(tmp / "mdps.npz", **arrays)
    spec = {
        "mdps": list(mdps),
        "pass_reps": args.pass_reps,
        "irl_iters": args.irl_iters,
        "lr": args.lr,
        "hidden": {k: v[5] for k, v in mdps.items()},
    }
    (tmp / "mdps.npz.json").write_text(json.dumps(spec))
    print(f"imitation {version[0]} (gymnasium {version[1]}) in {VENV} ...", flush=True)
    run_imitation(py, "mdps", str(tmp / "mdps.npz"), str(tmp / "imitation.npz"))
    theirs = np.load(tmp / "imitation.npz")
    rows = []
    print(
        f"\n{'MDP':12} {'S':>6} {'A':>2} {'H':>3} {'max |diff|':>10} "
        f"{'pass: imitation':>16} {'iltk':>9} {'x':>6} {'IRL iter: imitation':>20} "
        f"{'iltk':>9} {'x':>6}"
    )
    for name, (P, phi, r, init, H, hidden) in mdps.items():
        V, Q, pi = soft_value_iteration(P, r, H)
        D, Dcum = state_visitation(P, pi, init, H)
        diff = max(
            float(np.abs(a - theirs[f"{name}_{k}"]).max())
            for k, a in (("V", V), ("Q", Q), ("pi", pi), ("D", D), ("Dcum", Dcum))
        )
        ours_pass = time_passes(P, r, init, H, args.pass_reps)
        ours_iter = time_irl(P, phi, init, Dcum, H, hidden, args.lr, args.irl_iters)
        row = {
            "mdp": name,
            "S": P.shape[0],
            "A": P.shape[1],
            "H": H,
            "reward": "mlp 32-32" if hidden else "linear",
            "max_abs_diff": diff,
            "imitation_pass_ms": float(theirs[f"{name}_pass_s"]) * 1e3,
            "iltk_pass_ms": ours_pass * 1e3,
            "imitation_iter_ms": float(theirs[f"{name}_iter_s"]) * 1e3,
            "iltk_iter_ms": ours_iter * 1e3,
        }
        row["pass_speedup"] = row["imitation_pass_ms"] / row["iltk_pass_ms"]
        row["iter_speedup"] = row["imitation_iter_ms"] / row["iltk_iter_ms"]
        rows.append(row)
        print(
            f"{name:12} {row['S']:6} {row['A']:2} {H:3} {diff:10.1e} "
            f"{row['imitation_pass_ms']:13.2f} ms {row['iltk_pass_ms']:6.2f} ms "
            f"{row['pass_speedup']:5.1f}x {row['imitation_iter_ms']:17.2f} ms "
            f"{row['iltk_iter_ms']:6.2f} ms {row['iter_speedup']:5.1f}x",
            flush=True,
        )
    large = []
    if not args.skip_large:
        print(
            "\nlarge sparse MDPs (4 actions, 4 successors), iltk only: imitation's dense "
            "(S, A, S) array would need S*A*S*8 bytes"
        )
        for S, H in ((100_000, 50), (1_000_000, 20)):
            P, phi, r, init = random_mdp(S, 4, 4, 8, seed=2, dense=False)
            T = Transitions(P)
            t = time_passes(T, torch.as_tensor(r), torch.as_tensor(init), H, 1)
            row = {
                "S": S,
                "A": 4,
                "H": H,
                "pass_s": t,
                "dense_bytes": S * 4 * S * 8,
                "device": "cpu",
            }
            large.append(row)
            print(
                f"  S = {S:>9,}  H = {H}: one backward + forward pass {t:6.2f} s on the CPU "
                f"(a dense P: {S * 4 * S * 8 / 1e9:,.0f} GB)",
                flush=True,
            )
            if torch.cuda.is_available():
                Tg = Transitions(P, "cuda")
                tg = time_passes(Tg, torch.as_tensor(r).cuda(), torch.as_tensor(init).cuda(), H, 1)
                large.append({**row, "pass_s": tg, "device": "cuda"})
                print(f"  {'':26} {tg:6.2f} s on CUDA")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "imitation": version[0],
                "gymnasium_imitation": version[1],
                "torch": torch.__version__,
                "threads": 1,
                "rows": rows,
                "large": large,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
