"""The main job: train a small residual MLP and prune it gradually, functionally.

Run ``python -m sparsekit_fx.demo`` (``--help`` for flags, ``--fast`` for a
seconds-long smoke run). It

1. makes a learnable synthetic task in-process: inputs ``x ~ N(0, I)``,
   labels from a fixed random teacher network (no downloads);
2. builds spec trees from the model with :func:`~sparsekit_fx.specs_from_module`:
   coupled hidden channels (row ``i`` of ``fc1``, ``fc1.bias[i]``, column ``i``
   of ``fc2``) per layer, and 2:4 on every ``fc1``/``fc2`` weight;
3. trains with a ``torch.func`` loop (``functional_call`` + ``grad`` + a pure
   Adam) inside one ``torch.compile(fullgraph=True)`` step that also prunes:
   channel sparsity follows a cubic schedule, 2:4 switches on at a set step,
   both fed as tensors so the step never recompiles;
4. prints one row per epoch (loss, accuracy, sparsity, compiled vs eager ms
   per step), writes the weights back into the ``nn.Module`` with
   :func:`~sparsekit_fx.write_through_`, checks the module agrees, saves the
   masks compactly, and draws layer 0's layout and masks to a PNG (skipped
   with a message if matplotlib, the ``viz`` extra, is missing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

import sparsekit_fx as skf

Params = Dict[str, Tensor]


class Block(nn.Module):
    """A residual MLP block: ``x + fc2(relu(fc1(x)))``."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, d)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class Net(nn.Module):
    """Embedding, ``layers`` residual blocks, and a linear classifier head."""

    def __init__(self, n_in: int, d: int, h: int, layers: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Linear(n_in, d)
        self.layers = nn.ModuleList([Block(d, h) for _ in range(layers)])
        self.head = nn.Linear(d, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        for blk in self.layers:
            x = blk(x)
        return self.head(x)


class Teacher:
    """A fixed random network that labels ``x ~ N(0, I)``: the synthetic, learnable task."""

    def __init__(self, n_in: int, classes: int, hidden: int = 8, seed: int = 1234) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(n_in, hidden, generator=g) / n_in ** 0.5
        self.w2 = torch.randn(hidden, classes, generator=g)
        self.n_in = n_in

    def sample(self, n: int, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
        """Mutates ``gen``: ``n`` fresh inputs and their labels (an endless stream, no overfitting)."""
        x = torch.randn(n, self.n_in, generator=gen)
        return x, (torch.tanh(x @ self.w1) @ self.w2).argmax(-1)


def adam(params: Params, grads: Params, m: Params, v: Params, t: Tensor, lr: float,
         b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Tuple[Params, Params, Params]:
    """Pure: one Adam step; ``t`` is the 1-based step as a float tensor."""
    m = {k: b1 * m[k] + (1 - b1) * g for k, g in grads.items()}
    v = {k: b2 * v[k] + (1 - b2) * g * g for k, g in grads.items()}
    c1, c2 = 1 - torch.pow(b1, t), 1 - torch.pow(b2, t)
    new = {k: p - lr * (m[k] / c1) / (torch.sqrt(v[k] / c2) + eps) for k, p in params.items()}
    return new, m, v


def build_step(model: nn.Module, channel_schedule: skf.Schedule, nm_schedule: skf.Schedule, lr: float) -> Any:
    """Pure: the training step ``(params, trees, m, v, x, y, step) -> (params, m, v, loss, acc)``.

    ``trees`` is ``(channels, two_four)``: two spec trees applied in turn.
    """

    def loss_fn(params: Params, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        logits = functional_call(model, params, (x,))
        return nn.functional.cross_entropy(logits, y), logits

    def step(params: Params, trees: Any, m: Params, v: Params, x: Tensor, y: Tensor, t: Tensor):
        channels, two_four = trees
        grads, (loss, logits) = grad_and_value(loss_fn, has_aux=True)(params, x, y)
        params, m, v = adam(params, grads, m, v, (t + 1).to(torch.float32), lr)
        # Prune after the update: channels to the scheduled sparsity (the layers' same-layout specs
        # are batched), then 2:4 (sparsity 0 -> 0.5, i.e. 4 -> 2 kept of every 4).
        params = skf.hard_threshold(params, channels, sparsity=channel_schedule(t))
        params = skf.hard_threshold(params, two_four, sparsity=nm_schedule(t))
        acc = (logits.argmax(-1) == y).float().mean()
        return params, m, v, loss.detach(), acc

    return step


def _prunable_sparsity(params: Params, names: Sequence[str]) -> float:
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    return zeros / sum(params[n].numel() for n in names)


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sparsekit_fx.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=64, help="residual width d (default 64)")
    ap.add_argument("--hidden", type=int, default=256, help="hidden channels per block h (default 256)")
    ap.add_argument("--layers", type=int, default=2, help="residual blocks (default 2)")
    ap.add_argument("--epochs", type=int, default=8, help="epochs (default 8)")
    ap.add_argument("--steps", type=int, default=40, help="steps per epoch (default 40)")
    ap.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    ap.add_argument("--sparsity", type=float, default=0.5, help="final channel sparsity (default 0.5)")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    ap.add_argument("--eager-steps", type=int, default=3, help="eager steps timed per epoch (default 3)")
    ap.add_argument("--no-compile", action="store_true", help="run the step eagerly only")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    ap.add_argument("--out", default="sparsekit_fx_demo", help="output path prefix (default ./sparsekit_fx_demo)")
    ap.add_argument("--fast", action="store_true", help="tiny model, 2 short epochs: a smoke run for tests")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.fast:
        args.width, args.hidden, args.layers = 16, 32, 1
        args.epochs, args.steps, args.batch, args.eager_steps = 2, 6, 64, 1
    if args.hidden % 4 or args.width % 4:
        ap.error("--hidden and --width must be multiples of 4 (2:4 needs groups of four)")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Mutates (stdout, files): run the demo; returns a summary dict (used by tests)."""
    args = _parse(argv)
    torch.manual_seed(args.seed)
    n_in, classes = 32, 4
    total = args.epochs * args.steps
    teacher = Teacher(n_in, classes)
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    x_test, y_test = teacher.sample(4096, torch.Generator().manual_seed(args.seed + 2))
    model = Net(n_in, args.width, args.hidden, args.layers, classes)

    # Layouts from the model, by name: coupled channels per layer, and 2:4 on every fc weight.
    channels = skf.specs_from_module(model, [skf.channel_rule("*.fc1.weight", "*.fc2.weight", bias="*.fc1.bias")])
    two_four = skf.specs_from_module(model, [skf.BlockRule("*.fc[12].weight", (1, 1), (1, 4), name="2:4")])
    prunable = [n for s in two_four for n in s.params()]
    # Schedules: channels ramp cubically over the middle of training; 2:4 switches on at 60%.
    ramp0, ramp1 = max(total // 8, 1), max((total * 5) // 8, 2)
    channel_schedule = skf.cubic_schedule(args.sparsity, begin=ramp0, end=ramp1, every=max(args.steps // 4, 1))
    nm_schedule = skf.one_shot_schedule(0.5, at=(total * 3) // 5)

    print(f"sparsekit_fx demo: {args.layers} residual blocks, width {args.width}, {args.hidden} hidden channels, "
          f"{sum(p.numel() for p in model.parameters())} parameters; {args.epochs} epochs x {args.steps} steps")
    print(f"pruning: {len(channels)} coupled-channel specs to {args.sparsity:.0%} "
          f"(cubic, steps {ramp0}->{ramp1}), then 2:4 on {len(two_four)} weights from step {nm_schedule.at}")

    params: Params = {k: p.detach().clone() for k, p in model.named_parameters()}
    m = {k: torch.zeros_like(p) for k, p in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    trees = (channels, two_four)
    step = build_step(model, channel_schedule, nm_schedule, args.lr)

    def eager(params: Params, *args: Any) -> Any:
        return step(params, trees, *args)

    # compile_step makes the spec trees constants of one cached graph: step(params, m, v, x, y, t)
    compiled = eager if args.no_compile else skf.compile_step(step, trees, backend=args.backend)

    t_compile = 0.0
    if not args.no_compile:
        print(f"compiling the training step with {args.backend} (one graph: grad + Adam + channel pruning + 2:4) ...",
              flush=True)
        t0 = time.perf_counter()
        xb, yb = teacher.sample(args.batch, torch.Generator().manual_seed(0))
        compiled(params, m, v, xb, yb, torch.tensor(0))  # warm-up on a throwaway result
        t_compile = time.perf_counter() - t0
        print(f"compiled in {t_compile:.1f} s", flush=True)

    step_col = "eager ms" if args.no_compile else "compiled ms"
    header = f"{'epoch':>5} {'loss':>7} {'train acc':>9} {'test acc':>8} {'sparsity':>8} {step_col:>11} {'eager ms':>8}"
    print(header)
    print("-" * len(header), flush=True)
    rows: List[Dict[str, float]] = []
    t = 0
    for epoch in range(1, args.epochs + 1):
        losses, accs, elapsed = [], [], 0.0
        for _ in range(args.steps):
            xb, yb = teacher.sample(args.batch, data_gen)
            t0 = time.perf_counter()
            params, m, v, loss, acc = compiled(params, m, v, xb, yb, torch.tensor(t))
            elapsed += time.perf_counter() - t0
            losses.append(loss)
            accs.append(acc)
            t += 1
        eager_ms = elapsed / args.steps * 1e3 if args.no_compile else float("nan")
        if not args.no_compile and args.eager_steps > 0:
            t0 = time.perf_counter()
            for _ in range(args.eager_steps):  # same step, eagerly, on a throwaway copy
                eager(params, m, v, xb, yb, torch.tensor(t - 1))
            eager_ms = (time.perf_counter() - t0) / args.eager_steps * 1e3
        with torch.no_grad():
            test_acc = (functional_call(model, params, (x_test,)).argmax(-1) == y_test).float().mean().item()
        row = {"epoch": epoch, "loss": torch.stack(losses).mean().item(), "acc": torch.stack(accs).mean().item(),
               "test_acc": test_acc, "sparsity": _prunable_sparsity(params, prunable),
               "step_ms": elapsed / args.steps * 1e3, "eager_ms": eager_ms}
        rows.append(row)
        print(f"{epoch:>5} {row['loss']:>7.4f} {row['acc']:>9.1%} {row['test_acc']:>8.1%} {row['sparsity']:>8.1%} "
              f"{row['step_ms']:>11.2f} {eager_ms:>8.2f}", flush=True)

    graphs = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    if not args.no_compile:
        print(f"compiled graphs: {graphs} (sparsity and nnz enter as tensors, so growing sparsity never recompiles)")
    # The explicit write-back into the nn.Module, then the module path must agree.
    skf.write_through_(model, params)
    with torch.no_grad():
        module_acc = (model(x_test).argmax(-1) == y_test).float().mean().item()
    print(f"\nweights written back into the nn.Module (write_through_): test accuracy {module_acc:.1%}")
    final_masks = skf.merge_masks(
        skf.masks(params, channels, sparsity=args.sparsity), skf.masks(params, two_four, nnz=2))
    skf.print_sparsity_table(model, names=[n for n, _ in model.named_parameters() if n in final_masks])

    # Save the masks compactly (bit-packed block masks + the spec trees' JSON) and reload them.
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    mask_path = args.out + "_masks.pt"
    tree = channels + two_four
    torch.save(skf.masks_to_state_dict(tree, skf.block_masks(params, tree, sparsity=(
        (args.sparsity,) * len(channels) + (0.5,) * len(two_four)))), mask_path)
    loaded_tree, loaded = skf.masks_from_state_dict(torch.load(mask_path))
    reloaded = skf.expand_block_masks(loaded_tree, loaded)
    same = all(torch.equal(reloaded[k], final_masks[k]) for k in final_masks)
    print(f"masks saved to {mask_path} ({os.path.getsize(mask_path)} bytes; reloaded identical: {same})")

    png: Optional[str] = None
    try:
        from . import viz

        png = viz.draw_layout(channels[0], final_masks, args.out + "_layout.png", max_rows=32, max_cols=64,
                              title="layer 0: coupled channels (rows of fc1, fc1.bias, columns of fc2) + 2:4")
        print(f"layout and masks of layer 0 drawn to {os.path.abspath(png)}")
    except ImportError as e:
        print(f"skipping the layout picture: {e}")
    return {"rows": rows, "module_acc": module_acc, "png": png, "masks_path": mask_path,
            "masks_reloaded_equal": same, "compile_s": t_compile,
            "graphs": graphs}


if __name__ == "__main__":
    main()
    sys.exit(0)
