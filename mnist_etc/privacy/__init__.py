"""The privacy science: how private a trained model is, measured from both sides.

- `accounting`: epsilon of the DP-SGD training that actually ran (dp_accounting, PLD headline, RDP beside);
- `attacks/`: reconstruction attacks behind one interface and a registry (`attacks.get("public-prior")`);
- `metrics`: leakage scores of reconstructions (against the label-only baseline, with intervals);
- `membership`: membership inference through the model's scores, with its statistics;
- `canary/`: the one-run canary audit, an empirical lower bound on epsilon (Steinke, Nasr, Jagielski 2023);
- `audit`, `audit_report`: the audit of a deployed model, its gates and its report;
- `attack_report`: an attack on disk.
"""
