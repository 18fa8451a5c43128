"""The management command's flags become a SandboxConfig."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from nanoweb.management.commands.sandbox_upstream import Command


def config_from(*argv: str):
    command = Command()
    options = vars(command.create_parser("manage.py", "sandbox_upstream").parse_args(argv))
    return command.build_config(options)


def test_it_turns_flags_into_a_sandbox_config():
    config = config_from(
        "--latency", "0.5-2.0", "--rate-429", "0.1", "--rate-503", "0.2",
        "--rate-image-safety", "0.05", "--rpm", "10", "--daily-quota", "100",
        "--invalid-key", "bad-1", "--invalid-key", "bad-2", "--seed", "3",
        "--hide-model", "key-a=gemini-3-pro-image",
        "--hide-model", "key-a=models/gemini-nano-banana-2.1",
        "--hide-model", "key-b=gemini-3-pro-image",
    )  # fmt: skip
    assert (config.latency_min, config.latency_max) == (0.5, 2.0)
    assert config.rates == {"rate_limit": 0.1, "unavailable": 0.2, "image_safety": 0.05}
    assert (config.rpm, config.daily_quota, config.seed) == (10, 100, 3)
    assert config.invalid_keys == {"bad-1", "bad-2"}
    assert config.hidden_models == {
        "key-a": {"gemini-3-pro-image", "gemini-nano-banana-2.1"},
        "key-b": {"gemini-3-pro-image"},
    }
    assert not config.can_see("key-a", "gemini-nano-banana-2.1")
    assert config.can_see("key-b", "gemini-nano-banana-2.1")
    assert "3 model(s) hidden from 2 key(s)" in Command.describe(config)


def test_it_defaults_to_a_well_behaved_upstream():
    config = config_from()
    assert config.rates == {}
    assert (config.latency_max, config.rpm, config.daily_quota) == (0.0, None, None)
    assert config.hidden_models == {}


@pytest.mark.parametrize(
    "argv",
    [
        ("--latency", "soon"),
        ("--rate-503", "0.7", "--rate-500", "0.7"),
        ("--rate-504", "2"),
        ("--hide-model", "gemini-3-pro-image"),
        ("--hide-model", "=gemini-3-pro-image"),
        ("--hide-model", "key-a="),
        ("--hide-model", "key-a=gemini-3-pro-image-preview"),  # shut down: nothing to hide
    ],
)
def test_it_refuses_impossible_settings(argv):
    with pytest.raises(CommandError):
        config_from(*argv)
