"""The etl's settings (pydantic-settings): from the environment, refusing what is missing or
malformed with the variable's name, empty meaning the default."""

import pytest
from etl.config import ConfigError, Settings


@pytest.fixture
def env(monkeypatch):
    for name in ("ADMIN_DATABASE_URL", "BILLING_URL", "ETL_BATCH_SIZE", "ETL_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SERVICE_JWT_SECRET", "s3cret")
    return monkeypatch


def test_defaults_and_overrides_come_from_the_environment(env):
    env.setenv("BILLING_URL", "http://billing.test:8001/")
    env.setenv("ETL_BATCH_SIZE", "50")
    env.setenv("ETL_METRICS_PORT", "")  # empty: the default
    settings = Settings.from_env()
    assert settings.billing_url == "http://billing.test:8001"
    assert (settings.batch_size, settings.metrics_port) == (50, 0)
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVICE_JWT_SECRET", ""),
        ("ETL_BATCH_SIZE", "0"),
        ("ETL_BATCH_SIZE", "many"),
        ("ETL_METRICS_PORT", "-1"),
        ("ETL_INTERVAL_SECONDS", "-0.5"),
    ],
)
def test_a_missing_or_malformed_setting_refuses_to_start(env, name, value):
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        Settings.from_env()
