"""Child process for the crash tests: records synthetic episodes forever, printing
``SAVED <demo> <seed> <length>`` once each save has completed (i.e. is reported saved)."""

import signal
import sys

import numpy as np

from iltk.data import DemoWriter, make_env_args


def synthetic_episode(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    t = int(rng.integers(5, 60))
    return {
        "obs": {
            "state": rng.normal(size=(t, 7)).astype(np.float32),
            "pixels": rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8),
        },
        "next_obs": {"state": rng.normal(size=(t, 7)).astype(np.float32)},
        "actions": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
        "actions_executed": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
        "rewards": rng.normal(size=t).astype(np.float32),
        "dones": np.r_[np.zeros(t - 1), 1].astype(np.uint8),
        "states": rng.normal(size=(t, 20)),
        "fields": {"intervention": rng.random(t) < 0.3},
    }


def main():
    # A child started from a background job inherits SIGINT ignored (POSIX shells do that
    # without job control), and Python then installs no KeyboardInterrupt handler: restore
    # it, so the test's SIGINT is the Ctrl-C of a person at a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    path, first_seed, background = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    writer = DemoWriter(path, make_env_args("Synthetic-v0"), background=background, durable=False)
    seed = first_seed
    print("READY", flush=True)
    try:
        while True:
            future = writer.save(
                synthetic_episode(seed), source="scripted", seed=seed, success=True
            )
            name = future.result()
            print(f"SAVED {name} {seed}", flush=True)
            seed += 1
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()  # Ctrl-C: finish queued saves and consolidate


if __name__ == "__main__":
    main()
