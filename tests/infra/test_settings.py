"""Context values: defaults from cdk.json, CLI strings parsed, bad values refused with the key's name."""

from __future__ import annotations

import pytest
from aws_cdk import App

from app import default_context
from stacks.settings import Settings, SettingsError


def settings(**overrides: object) -> Settings:
    return Settings.from_node(App(context={**default_context(), **overrides}).node)


def test_defaults_come_from_cdk_json():
    assert settings() == Settings(
        max_vcpus=16,
        use_spot=False,
        runnable_timeout_seconds=1800,
        max_timeout_seconds=21600,
        powertools_layer_version=27,
        notify_on_success=False,
        alert_email=None,
        table_name=None,
        codec_max_wall_seconds=21600,
        codec_max_cpu_seconds=21600,
        codec_max_memory_gib=64,
    )


def test_the_codec_caps_are_one_set_of_variables_from_the_context():
    assert settings(codecMaxWallSeconds="1200", codecMaxMemoryGib=8).codec_cap_environment == {
        "CODECLAB_CODEC_MAX_WALL_SECONDS": "1200",
        "CODECLAB_CODEC_MAX_CPU_SECONDS": "21600",
        "CODECLAB_CODEC_MAX_MEMORY_BYTES": str(8 << 30),
    }


def test_cli_strings_are_parsed():
    parsed = settings(maxVcpus="32", useSpot="true", alertEmail="ops@example.com", tableName="experiments")
    assert (parsed.max_vcpus, parsed.use_spot, parsed.alert_email, parsed.table_name) == (
        32,
        True,
        "ops@example.com",
        "experiments",
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("maxVcpus", "2", "between 4 and"),
        ("maxVcpus", "lots", "whole number"),
        ("useSpot", "yes", "true or false"),
        ("runnableTimeoutSeconds", 300, "between 600 and 86400"),
        ("maxTimeoutSeconds", True, "whole number"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(SettingsError, match=f"{key}.*{message}"):
        settings(**{key: value})


def test_a_missing_default_is_reported():
    with pytest.raises(SettingsError, match="'maxVcpus' is missing"):
        Settings.from_node(App().node)
