"""load_settings: overrides > SPENDWATCH_* > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from spendwatch.errors import ConfigurationError
from spendwatch.settings import load_settings


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose (default) config file does not exist and whose data dir
    is in tmp_path."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "SPENDWATCH_DATA_DIR": str(tmp_path / "data")}


def write_config(tmp_path: Path, text: str, env: dict[str, str]) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    env["SPENDWATCH_CONFIG"] = str(path)
    return path


def test_defaults(env, tmp_path):
    s = load_settings({}, env)
    data = str(tmp_path / "data")
    assert s.data_dir == data
    assert s.database_url == f"sqlite:///{data}/spendwatch.db"
    assert s.spool_dir == f"{data}/spool"
    assert (s.queue_size, s.batch_size) == (50000, 1000)
    assert (s.flush_interval, s.exit_timeout) == (0.5, 5.0)
    assert s.log_level == "INFO"
    assert s.environment == ""
    assert s.config_file == str(tmp_path / "xdg-config" / "spendwatch" / "config.toml")


def test_precedence(env, tmp_path):
    write_config(tmp_path, "queue_size = 10\nbatch_size = 20\nflush_interval = 0.25\n"
                 "log_level = 'debug'\n", env)
    env["SPENDWATCH_QUEUE_SIZE"] = "11"
    env["SPENDWATCH_BATCH_SIZE"] = "21"
    s = load_settings({"queue_size": 12, "batch_size": None}, env)
    assert s.queue_size == 12  # override beats env and file
    assert s.batch_size == 21  # None is "not given": env beats file
    assert s.flush_interval == 0.25  # file beats default
    assert s.log_level == "DEBUG"
    assert s.exit_timeout == 5.0  # default


def test_empty_env_variable_falls_through_to_file(env, tmp_path):
    write_config(tmp_path, "environment = 'staging'\n", env)
    env["SPENDWATCH_ENVIRONMENT"] = ""
    assert load_settings({}, env).environment == "staging"


def test_config_file_spendwatch_table(env, tmp_path):
    write_config(tmp_path, "[spendwatch]\nqueue_size = 77\nenvironment = 'prod'\n", env)
    s = load_settings({}, env)
    assert (s.queue_size, s.environment) == (77, "prod")


def test_data_dir_substitution_follows_the_winning_data_dir(env, tmp_path):
    write_config(tmp_path, f"data_dir = '{tmp_path / 'from-file'}'\n", env)
    del env["SPENDWATCH_DATA_DIR"]
    s = load_settings({}, env)
    assert s.spool_dir == f"{tmp_path / 'from-file'}/spool"
    other = tmp_path / "override"
    s = load_settings({"data_dir": str(other)}, env)
    assert s.data_dir == str(other)
    assert s.database_url == f"sqlite:///{other}/spendwatch.db"
    assert s.spool_dir == f"{other}/spool"


def test_substitution_in_given_values(env, tmp_path):
    env["SPENDWATCH_SPOOL_DIR"] = "{data_dir}/elsewhere"
    assert load_settings({}, env).spool_dir == f"{tmp_path / 'data'}/elsewhere"


def test_given_env_is_the_only_environment_read(env, tmp_path, monkeypatch):
    del env["SPENDWATCH_DATA_DIR"]
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "process-xdg"))
    monkeypatch.setenv("SPENDWATCH_QUEUE_SIZE", "7")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    s = load_settings({}, env)
    assert s.data_dir == str(tmp_path / "xdg" / "spendwatch")
    assert s.spool_dir == f"{tmp_path / 'xdg' / 'spendwatch'}/spool"
    assert s.queue_size == 50000


def test_default_data_dir_uses_given_env(env, tmp_path, monkeypatch):
    del env["SPENDWATCH_DATA_DIR"]
    env["XDG_DATA_HOME"] = str(tmp_path / "given")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "process"))
    assert load_settings({}, env).data_dir == str(tmp_path / "given" / "spendwatch")


@pytest.mark.parametrize(("name", "value"), [
    ("queue_size", "abc"),
    ("queue_size", "0"),
    ("batch_size", "-5"),
    ("flush_interval", "-1"),
    ("flush_interval", "soon"),
    ("exit_timeout", "0"),
    ("log_level", "LOUD"),
])
def test_bad_values_name_the_variable(env, name, value):
    variable = "SPENDWATCH_" + name.upper()
    env[variable] = value
    with pytest.raises(ConfigurationError, match=variable) as info:
        load_settings({}, env)
    assert isinstance(info.value, ValueError)


def test_bad_value_from_override(env):
    with pytest.raises(ConfigurationError, match="SPENDWATCH_QUEUE_SIZE"):
        load_settings({"queue_size": "lots"}, env)


def test_unknown_override_is_refused(env):
    with pytest.raises(ConfigurationError, match="'colour'"):
        load_settings({"colour": "red"}, env)


def test_unknown_key_in_config_file(env, tmp_path):
    path = write_config(tmp_path, "queue_size = 5\ncolour = 'red'\n", env)
    with pytest.raises(ConfigurationError) as info:
        load_settings({}, env)
    assert str(path) in str(info.value)
    assert "'colour'" in str(info.value)


def test_config_file_not_toml(env, tmp_path):
    path = write_config(tmp_path, "queue_size = = 5\n[unclosed\n", env)
    with pytest.raises(ConfigurationError) as info:
        load_settings({}, env)
    assert str(path) in str(info.value)
    assert "SPENDWATCH_CONFIG" in str(info.value)


def test_config_file_not_utf8(env, tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b"environment = '\xff'\n")
    env["SPENDWATCH_CONFIG"] = str(path)
    with pytest.raises(ConfigurationError, match=r"config\.toml"):
        load_settings({}, env)


def test_explicit_config_file_must_exist(tmp_path: Path, env: dict[str, str]) -> None:
    env["SPENDWATCH_CONFIG"] = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigurationError, match=r"absent\.toml"):
        load_settings(env=env)


def test_settings_outside_the_table_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    write_config(tmp_path, 'queue_size = 5\n[spendwatch]\nbatch_size = 7\n', env)
    with pytest.raises(ConfigurationError, match=r"\[spendwatch\] table"):
        load_settings(env=env)
    write_config(tmp_path, "spendwatch = 1\n", env)
    with pytest.raises(ConfigurationError, match=r"\[spendwatch\] table"):
        load_settings(env=env)


def test_settings_command_hides_secrets(monkeypatch, capsys, tmp_path):
    from spendwatch.cli import main

    monkeypatch.setenv("SPENDWATCH_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("SPENDWATCH_OPENAI_ADMIN_KEY", "sk-admin-secret")
    monkeypatch.setenv("SPENDWATCH_DATABASE_URL",
                       "postgresql+psycopg://spend:pgpass@db.example:5432/spend")
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("SPENDWATCH_CONFIG", str(tmp_path / "empty.toml"))
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "sk-admin-secret" not in out and "pgpass" not in out
    assert "(set, hidden)" in out and "db.example" in out
