"""One table of settings, read from arguments, then environment variables, then the
config file, then the default.

Every setting has a name (used in the config file and as ``--name`` on the command
line), an environment variable, a default and a help text; the README's settings
table is generated from :data:`SETTINGS` (``spendwatch settings``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from spendwatch.errors import ConfigurationError

__all__ = ["SETTINGS", "Setting", "Settings", "config_file_path", "default_data_dir",
           "load_settings"]


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/spendwatch``, else ``~/.local/share/spendwatch``."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "spendwatch"


def config_file_path(env: Mapping[str, str] | None = None) -> Path:
    """``$SPENDWATCH_CONFIG``, else ``$XDG_CONFIG_HOME/spendwatch/config.toml``."""
    env = os.environ if env is None else env
    if env.get("SPENDWATCH_CONFIG"):
        return Path(env["SPENDWATCH_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "spendwatch" / "config.toml"


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number; "
                                 f"give a positive integer such as 1000") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={value} must be greater than 0")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds; "
                                 f"give a value such as 0.5") from None
    if not value > 0:
        raise ConfigurationError(f"{name}={value} must be greater than 0")
    return value


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigurationError(f"{name}={raw!r} is not a log level; "
                                 f"use DEBUG, INFO, WARNING or ERROR")
    return level


def _timezone(name: str, raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    value = raw.strip() or "UTC"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"{name}={raw!r} is not a timezone; use an IANA name such "
                                 f"as UTC, Europe/Paris or America/New_York") from None
    return value


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not on or off; use true or false")


def _port(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > 65535:
        raise ConfigurationError(f"{name}={value} is not a TCP port; use 1-65535, e.g. 587")
    return value


def _weekday(name: str, raw: str) -> str:
    value = raw.strip().lower()
    days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    if value not in days:
        raise ConfigurationError(f"{name}={raw!r} is not a weekday; use one of "
                                 f"{', '.join(days)}")
    return value


def _days_or_off(name: str, raw: str) -> int:
    """A number of days, 0 meaning off."""
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number of days; give 0 "
                                 f"(off) or e.g. 5") from None
    if not 0 <= value <= 27:
        raise ConfigurationError(f"{name}={value} must be between 0 (off) and 27 days")
    return value


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    default: str
    help: str
    parse: Callable[[str, str], object] = _text

    @property
    def env(self) -> str:
        return "SPENDWATCH_" + self.name.upper()


# Defaults may refer to other settings as {data_dir}; they are filled in after the
# settings they name have been resolved (data_dir comes first for that reason).
SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "", "Folder for the default SQLite database and the spool "
            "(default: $XDG_DATA_HOME/spendwatch or ~/.local/share/spendwatch)."),
    Setting("database_url", "sqlite:///{data_dir}/spendwatch.db",
            "SQLAlchemy URL of the database every component uses, e.g. "
            "postgresql://user@host:5432/spendwatch."),
    Setting("spool_dir", "{data_dir}/spool",
            "Where the collector keeps events on disk while the database is unreachable."),
    Setting("environment", "", "Value of the `environment` field of every event "
            "(e.g. production); a tag given to instrument() or tags() wins."),
    Setting("queue_size", "50000", "Events the collector holds in memory before it "
            "drops new ones (and counts them).", _positive_int),
    Setting("batch_size", "1000", "Events the background writer inserts per "
            "transaction.", _positive_int),
    Setting("flush_interval", "0.5", "Seconds the background writer waits for a batch "
            "to fill before writing what it has.", _positive_float),
    Setting("exit_timeout", "5", "Seconds spent at interpreter exit or SIGTERM writing "
            "queued events; what is left goes to the spool.", _positive_float),
    Setting("timezone", "UTC", "Reporting timezone (IANA name): days and months of rollups, "
            "reports and budgets are calendar periods in it. UTC is OpenAI's billing day.",
            _timezone),
    Setting("rollup_interval", "300", "Seconds between the scheduler's incremental rollups "
            "(each followed by the alert evaluation).", _positive_float),
    Setting("log_level", "INFO", "Log level of spendwatch's own loggers (they print nothing "
            "unless the application configures logging).", _log_level),
    # -- dashboard
    Setting("dashboard_host", "127.0.0.1", "Address `spendwatch serve` listens on; anything "
            "beyond loopback should also set dashboard_user and dashboard_password."),
    Setting("dashboard_port", "8050", "Port `spendwatch serve` listens on.", _positive_int),
    Setting("dashboard_user", "", "User name for the dashboard's HTTP basic auth (auth is "
            "on when this and dashboard_password are both set)."),
    Setting("dashboard_password", "", "Password for the dashboard's HTTP basic auth."),
    # -- alerts
    Setting("smtp_host", "", "SMTP server for alert emails; empty: emails are written as "
            ".eml files to {data_dir}/outbox instead of being sent."),
    Setting("smtp_port", "587", "SMTP port (465: implicit TLS instead of STARTTLS).", _port),
    Setting("smtp_starttls", "true", "Use STARTTLS before logging in (true/false).", _flag),
    Setting("smtp_user", "", "SMTP login (empty: no login)."),
    Setting("smtp_password", "", "SMTP password (prefer the environment variable)."),
    Setting("smtp_from", "spendwatch@localhost", "From address of alert emails."),
    Setting("alert_webhook_url", "", "Slack-compatible webhook every alert is also posted to "
            "(budgets and rules can name their own)."),
    Setting("dashboard_url", "http://127.0.0.1:8050", "Base URL of the dashboard, for the "
            "links in alert messages."),
    Setting("week_start", "monday", "First day of a weekly budget period.", _weekday),
    Setting("enforce_budgets", "false", "Let the collector enforce block/downgrade budgets "
            "before each call (reads spend from the database).", _flag),
    Setting("enforce_refresh", "5", "Seconds the collector caches budget spend before "
            "re-reading it.", _positive_float),
    # -- chargeback
    Setting("openai_admin_key", "", "OpenAI admin key for the Costs API (reconciliation); "
            "empty: no reconciliation. Prefer the environment variable."),
    Setting("openai_admin_base_url", "https://api.openai.com/v1", "Base URL of OpenAI's "
            "admin API (the Costs API is GET {base}/organization/costs)."),
    Setting("openai_projects", "", "OpenAI project ids mapped to our project names for "
            "reconciliation, e.g. proj_abc123=ranker,proj_def456=search."),
    Setting("reconcile_drift_threshold", "5", "Percent by which a month's billed cost may "
            "differ from the estimate before `spendwatch reconcile` flags the drift (and "
            "the default threshold of reconciliation_drift alert rules).",
            _positive_float),
    Setting("month_close_after_days", "0", "The scheduler closes the previous month "
            "automatically once this many days of the new month have passed (0: never; "
            "a month reopened by hand is not closed again).", _days_or_off),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    data_dir: str
    database_url: str
    spool_dir: str
    environment: str
    queue_size: int
    batch_size: int
    flush_interval: float
    exit_timeout: float
    timezone: str
    rollup_interval: float
    log_level: str
    config_file: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "spendwatch@localhost"
    alert_webhook_url: str = ""
    dashboard_url: str = "http://127.0.0.1:8050"
    week_start: str = "monday"
    enforce_budgets: bool = False
    enforce_refresh: float = 5.0
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8050
    dashboard_user: str = ""
    dashboard_password: str = ""
    # -- chargeback
    openai_admin_key: str = ""
    openai_admin_base_url: str = "https://api.openai.com/v1"
    openai_projects: str = ""
    reconcile_drift_threshold: float = 5.0
    month_close_after_days: int = 0

    def source_of(self, name: str) -> str:  # pragma: no cover - informational
        return _BY_NAME[name].env


def _read_config_file(path: Path, explicit: bool) -> dict[str, str]:
    if not path.is_file():
        if explicit:
            raise ConfigurationError(f"SPENDWATCH_CONFIG names {path}, which is not a file; "
                                     f"create it or unset SPENDWATCH_CONFIG")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc}; fix the file "
                                 f"or point SPENDWATCH_CONFIG elsewhere") from exc
    table: object = data
    if "spendwatch" in data:
        table = data["spendwatch"]
        others = sorted(k for k in data if k != "spendwatch")
        if not isinstance(table, dict) or others:
            raise ConfigurationError(f"{path}: put every setting in the [spendwatch] table "
                                     f"(found {', '.join(others) or 'spendwatch = ...'} "
                                     f"outside it)")
    out: dict[str, str] = {}
    for key, value in table.items():  # type: ignore[union-attr]
        if key not in _BY_NAME:
            known = ", ".join(sorted(_BY_NAME))
            raise ConfigurationError(f"{path}: unknown setting {key!r}; known settings: "
                                     f"{known}")
        if isinstance(value, dict | list):
            raise ConfigurationError(f"{path}: setting {key!r} must be a single value")
        out[key] = str(value)
    return out


def load_settings(overrides: Mapping[str, object | None] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: ``overrides`` (command-line arguments; ``None`` means
    not given), then ``SPENDWATCH_*`` environment variables, then the config file,
    then the default."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in overrides:
        if key not in _BY_NAME:
            raise ConfigurationError(f"unknown setting {key!r}")
    path = config_file_path(env)
    from_file = _read_config_file(path, explicit=bool(env.get("SPENDWATCH_CONFIG")))

    raw: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.name in overrides:
            raw[setting.name] = str(overrides[setting.name])
        elif env.get(setting.env):
            raw[setting.name] = env[setting.env]
        elif setting.name in from_file:
            raw[setting.name] = from_file[setting.name]
        else:
            raw[setting.name] = setting.default

    if not raw["data_dir"]:
        raw["data_dir"] = str(default_data_dir(env))
    raw["data_dir"] = str(Path(raw["data_dir"]).expanduser())
    values: dict[str, object] = {}
    for setting in SETTINGS:
        text = raw[setting.name].replace("{data_dir}", raw["data_dir"])
        values[setting.name] = setting.parse(setting.env, text)
    names = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in names},  # type: ignore[arg-type]
                    config_file=str(path))
