"""Typed configuration: the `Settings` base (strict pydantic, one-sentence errors), the one YAML loader, and
the data and training settings. Other settings build on these next to the code that uses them: the attack's
(`mnist_etc.audit.attacks.config`), the audit policy (`mnist_etc.audit.config`), search spaces
(`mnist_etc.sweep.space`) and benchmark grids (`mnist_etc.benchmark.grid`)."""
from mnist_etc.config.settings import Settings, accepts, sentence
from mnist_etc.config.training import HID_DIM_RANGE, DataConfig, TrainConfig
from mnist_etc.config.yaml_file import parse_yaml, read_yaml

__all__ = ["Settings", "accepts", "sentence", "HID_DIM_RANGE", "DataConfig", "TrainConfig", "parse_yaml",
           "read_yaml"]
