"""The audit: how private a trained model is, measured from outside and judged. Sits above `training.py` (it
trains canary runs and loads stored models); the DP mechanism it checks is `mnist_etc.dp`, below training.

- `attacks/`: reconstruction attacks behind one interface and a registry (`attacks.get("public-prior")`), their
  settings (`attacks.config.AttackConfig`), the attack runner and an attack on disk (`attacks.report`);
- `leakage`: leakage scores of reconstructions (against the label-only baseline, with intervals);
- `membership`: membership inference through the model's scores, with its statistics;
- `public_data`, `public_models`: the outsider's public digits and the autoencoders fitted on them;
- `canary/`: the one-run canary audit, an empirical lower bound on epsilon (Steinke, Nasr, Jagielski 2023);
- `config`: the audit policy (`AuditConfig`), one home for its defaults;
- `run`: the audit of a deployed model (measurements), `record`: reading figures from an audit record;
- `gates/`: the tests the record must pass, one module each behind `gates.base.Gate`, and `gates.judge`;
- `report`: the audit on disk (audit.json, report.md, grid and ROC plots).
"""
