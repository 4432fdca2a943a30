"""Regenerate docs/layout.png (the README's picture): python docs/make_layout.py"""

import pathlib

import torch
from torch import nn

import sparsekit_fx as skf
from sparsekit_fx import viz

torch.manual_seed(0)
model = nn.Module()
model.fc1, model.fc2 = nn.Linear(12, 16), nn.Linear(16, 12)
params = dict(model.named_parameters())
# Channels in two scopes of 8 (each keeps 4), then 2:4 along the rows of both weights.
channels = skf.specs_from_module(model, [skf.channel_rule("fc1.weight", "fc2.weight", bias="fc1.bias", scope=(8,))])
two_four = skf.specs_from_module(model, [skf.BlockRule("fc?.weight", (1, 1), (1, 4))])
masks = skf.merge_masks(skf.masks(params, channels, sparsity=0.5), skf.masks(params, two_four, nnz=2))
out = pathlib.Path(__file__).resolve().parent / "layout.png"
viz.draw_layout(channels, masks, out, title="coupled channels (rows of fc1, fc1.bias, columns of fc2), "
                                            "2 scopes of 8, then 2:4", dpi=90)
print(out)
