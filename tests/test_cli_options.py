"""The one way settings become command-line options (`mnist_etc_cli.options`), and every verb's help telling the
defaults the parser really uses."""
import argparse
import re

import pytest

from mnist_etc.audit.config import AuditConfig
from mnist_etc.config import Settings, TrainConfig
from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import TritonModelConfig
from mnist_etc_cli.main import build_parser
from mnist_etc_cli.options import add_settings_options


def parse(opts_factory, argv):
    parser = argparse.ArgumentParser()
    opts = opts_factory(parser)
    return opts, parser.parse_args(argv)


def test_fields_become_options_with_the_fields_help_and_default():
    parser = argparse.ArgumentParser()
    add_settings_options(parser, TrainConfig, title="training")
    action = next(a for a in parser._actions if "--hid-dim" in a.option_strings)
    assert action.type is int and TrainConfig.model_fields["hid_dim"].description in action.help
    assert f"(default: {TrainConfig().hid_dim})" in action.help


def test_only_given_options_override_and_mistakes_name_the_option():
    opts, args = parse(lambda p: add_settings_options(p, TrainConfig), ["--ae-epochs", "3"])
    cfg = opts.build(args, clf_epochs=7)
    assert (cfg.ae_epochs, cfg.clf_epochs, cfg.hid_dim) == (3, 7, TrainConfig().hid_dim)
    opts, args = parse(lambda p: add_settings_options(p, TrainConfig), ["--batch-size", "0"])
    with pytest.raises(UserError, match=r"^--batch-size must be an integer >= 1, got 0\.$"):
        opts.build(args)


def test_nested_paths_keep_the_rest_of_the_nested_defaults_and_take_their_own_flags():
    fields = ("attack.victims", "canary.canaries", "canary_audit", "allow_non_private")
    factory = lambda p: add_settings_options(p, AuditConfig, fields=fields,   # noqa: E731
                                             flags={"attack.victims": "--audit-victims"})
    opts, args = parse(factory, ["--audit-victims", "60", "--canary-audit", "off", "--allow-non-private"])
    cfg = opts.build(args)
    assert cfg.attack.victims == 60 and cfg.attack.n_iter == AuditConfig().attack.n_iter   # the policy's, not 8
    assert cfg.canary_audit is False and cfg.allow_non_private is True
    assert parse(factory, [])[0].build(parse(factory, [])[1]).canary_audit is None          # auto
    opts, args = parse(factory, ["--audit-victims", "10"])
    with pytest.raises(UserError, match="^--audit-victims must be at least 50 per group"):
        opts.build(args)


def test_a_switch_that_defaults_on_is_turned_off_and_int_lists_parse():
    factory = lambda p: add_settings_options(p, TritonModelConfig,   # noqa: E731
                                             fields=("dynamic_batching", "preferred_batch_size", "max_batch_size"))
    opts, args = parse(factory, ["--preferred-batch-size", "8,16", "--max-batch-size", "32"])
    cfg = opts.build(args)
    assert cfg.preferred_batch_size == (8, 16) and cfg.dynamic_batching is True
    opts, args = parse(factory, ["--no-dynamic-batching"])
    assert opts.build(args).dynamic_batching is False
    opts, args = parse(factory, ["--no-dynamic-batching", "--preferred-batch-size", "8"])
    with pytest.raises(UserError, match="preserve_ordering need dynamic_batching"):
        opts.build(args)


def test_base_values_are_the_defaults_shown_and_applied():
    class Small(Settings):
        n: int = 3

    parser = argparse.ArgumentParser()
    opts = add_settings_options(parser, Small, base={"n": 25})
    action = next(a for a in parser._actions if "--n" in a.option_strings)
    assert "(default: 25)" in action.help and opts.build(parser.parse_args([])).n == 25


def _verb_parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices.items())


def test_every_verb_tells_the_defaults_it_uses():
    """A help text that restates a default by hand drifts from it; each '(default X)' must be the parser's own
    default (options from settings show the model's, checked above)."""
    checked = 0
    for verb, parser in _verb_parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.help or action.default in (argparse.SUPPRESS, None):   # None: derived at run time
                continue
            text = formatter._expand_help(action)
            match = re.search(r"\(default:? ([^)]*)\)", text)
            if match and not match.group(1).startswith(("$", "newest", "the ", "start", "sqlite", "none", "<")):
                checked += 1
                assert match.group(1) == str(action.default), f"{verb} {action.option_strings}: {text!r}"
    assert checked >= 15


def test_verbs_are_listed_once_each():
    names = [verb for verb, _ in _verb_parsers()]
    assert {"train", "attack", "demo", "sweep", "export", "serve", "infer", "benchmark", "pipeline", "audit",
            "audit-dp"} <= set(names)
