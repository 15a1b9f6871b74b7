"""Is torch's Conv1d the bottleneck of the diffusion U-Net's step on the CPU?

Times a 1-D convolution (kernel 5, 'same' padding) forward and backward at the shapes of
the CPU-sized U-Net (batch 64; widths 32/64/128 at lengths 16/8/4, and the up path's
concatenations) two ways, one torch thread: ``F.conv1d`` (oneDNN) and the same
convolution written as an unfold plus one matmul (im2col). If the matmul path were much
faster, a custom convolution would be a way to train faster than LeRobot, whose U-Net calls
the same ``F.conv1d``. Prints a table and writes JSON (``--out``).

    python benchmarks/conv1d_im2col.py --out runs/bench/conv1d_im2col.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [(32, 32, 16), (64, 64, 8), (128, 128, 4), (256, 128, 8), (128, 64, 8), (64, 32, 16)]


def conv_im2col(x, w, b):
    """The same convolution as ``F.conv1d(x, w, b, padding=K // 2)`` (odd K)."""
    B, C, T = x.shape
    out, _, K = w.shape
    cols = F.pad(x, (K // 2, K // 2)).unfold(2, K, 1)  # B, C, T, K
    cols = cols.permute(0, 2, 1, 3).reshape(B * T, C * K)
    return (cols @ w.reshape(out, C * K).t() + b).reshape(B, T, out).permute(0, 2, 1)


def time_ms(f, x, w, b, reps: int) -> float:
    for _ in range(10):
        f(x, w, b).sum().backward()
    t = time.perf_counter()
    for _ in range(reps):
        f(x, w, b).sum().backward()
    return (time.perf_counter() - t) / reps * 1e3


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/conv1d_im2col.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    print("| in | out | length | F.conv1d ms | im2col ms | conv1d / im2col |")
    print("|---|---|---|---|---|---|")
    for c, o, t in SHAPES:
        x = torch.randn(args.batch, c, t, requires_grad=True)
        w = torch.randn(o, c, 5, requires_grad=True)
        b = torch.randn(o, requires_grad=True)
        ref = F.conv1d(x, w, b, padding=2)
        err = (ref - conv_im2col(x, w, b)).abs().max().item()
        if err > 1e-3 * ref.abs().max().item():
            raise SystemExit(f"im2col differs from F.conv1d by {err} at {(c, o, t)}")
        a = time_ms(lambda x, w, b: F.conv1d(x, w, b, padding=2), x, w, b, args.reps)
        m = time_ms(conv_im2col, x, w, b, args.reps)
        rows.append({"in": c, "out": o, "length": t, "conv1d_ms": a, "im2col_ms": m})
        print(f"| {c} | {o} | {t} | {a:.3f} | {m:.3f} | {a / m:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"batch": args.batch, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
