"""The main job: prune a small MLP with coupled channels and 2:4, functionally.

Run ``python -m sparsekit_fx.demo``. (A fuller training demo replaces this one.)
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import sparsekit_fx as skf


def main(argv=None) -> None:
    """Mutates: builds a model, prunes it with pure ops, writes the result back, prints a table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    d, h = 64, args.hidden
    model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, d))
    params = dict(model.named_parameters())
    fc1 = skf.BlockSpec(skf.View.of("0.weight", params["0.weight"]), (1, -1))
    fc2 = skf.BlockSpec(skf.View.of("2.weight", params["2.weight"]), (-1, 1))
    channels = skf.ScopeSpec(skf.BlockCoupling((fc1, fc2), orders=((0, 1), (1, 0))), ())
    two_four = [skf.ScopeSpec(skf.BlockSpec(skf.View.of(n, params[n]), (1, 1)), (1, 4)) for n in ("0.weight", "2.weight")]

    def step(p, sparsity):
        p = skf.hard_threshold(p, channels, sparsity=sparsity)
        for s in two_four:
            p = skf.hard_threshold(p, s, nnz=2)
        return p

    t0 = time.perf_counter()
    new = step(params, torch.tensor(0.5))
    eager = time.perf_counter() - t0
    skf.write_through_(model, new)
    print(f"{'parameter':<12}{'shape':>14}{'density':>10}")
    for name, p in model.named_parameters():
        print(f"{name:<12}{str(tuple(p.shape)):>14}{(p != 0).float().mean().item():>10.3f}")
    print(f"pruned with coupled channels (50%) + 2:4 in {eager * 1e3:.1f} ms (eager)")


if __name__ == "__main__":
    main()
