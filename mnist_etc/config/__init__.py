"""Typed configuration: the `Settings` base (strict pydantic, one-sentence errors), the one YAML loader, and
the data, training and attack settings. Search spaces, benchmark grids and the audit policy build on these
next to the code that uses them (`mnist_etc.sweep.space`, `mnist_etc.benchmark.grid`, `mnist_etc.privacy.audit`)."""
from mnist_etc.config.settings import Settings, accepts, sentence
from mnist_etc.config.training import ESTIMATES, HID_DIM_RANGE, AttackConfig, DataConfig, TrainConfig
from mnist_etc.config.yaml_file import parse_yaml, read_yaml

__all__ = ["Settings", "accepts", "sentence", "ESTIMATES", "HID_DIM_RANGE", "AttackConfig", "DataConfig",
           "TrainConfig", "parse_yaml", "read_yaml"]
