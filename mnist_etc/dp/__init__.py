"""Differential privacy as the training uses it: the mechanism and its accounting. Sits below `training.py`;
imports nothing of the audit (`mnist_etc.audit`, which judges trained models, sits above training).

- `sgd`: DP-SGD as the accountant assumes it (Poisson sampling, clipping, Gaussian noise), `DPSGD.from_config`;
- `layerwise`, `fast_clipping`: per-example clipping paths of a Conv2D / Conv2DTranspose / Dense stack;
- `accounting`: epsilon of the DP-SGD that ran (dp_accounting, PLD headline, RDP beside).
"""
