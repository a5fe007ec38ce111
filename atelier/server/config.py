"""`ServerSettings`: every setting of the server in one typed dataclass.

Read from, later sources winning: the defaults here, a TOML file (`--config`; its keys are the
field names, in a `[server]` table or at the top level), environment variables `ATELIER_<FIELD>`
(e.g. ATELIER_PORT=9000, ATELIER_CORS_ORIGINS=https://a.example,https://b.example), then command-line
flags. An unknown key in the file or a value of the wrong type is refused, naming it.
"""

from __future__ import annotations

import os
import secrets
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "ATELIER_"
SECRET_FILE = "secret"


def default_data_dir() -> Path:
    """~/.atelier: the same place whichever folder `atelier serve` or `atelier users` run from."""
    return Path.home() / ".atelier"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    data: Path = field(default_factory=default_data_dir)   # database, assets and the signing secret
    model: Path | None = None            # a model folder; None: the shipped atelier/weights/default
    threads: int = 2                     # torch CPU threads of the server process
    rate_limit: int = 60                 # requests per key per rate_window seconds
    rate_window: float = 60.0
    daily_quota: int = 1000              # images per key per UTC day
    cors_origins: tuple[str, ...] = ()   # empty: no cross-origin browser access
    max_upload_bytes: int = 16 * 2**20   # per uploaded file; a whole request may carry two and the form fields
    url_ttl: int = 3600                  # seconds a signed asset link stays valid (OpenAI's urls last 60 min)
    public_url: str | None = None        # the base of asset urls when behind a proxy; default: as requested
    secret: str | None = field(default=None, repr=False)   # signs asset links; default: DATA/secret, made once
    max_prompt_chars: int = 4000         # OpenAI's limit for dall-e-3
    log_level: str = "info"
    redis: str | None = None             # redis://...: jobs go to `atelier worker` processes; None: run here
    job_heartbeat: int = 10              # seconds without a heartbeat after which a Redis worker counts as dead
    max_batch: int = 8                   # compatible queued jobs run as one pipeline call, up to this many
    batch_wait: float = 0.25             # seconds a batch may wait for more jobs when the last one was larger
    shutdown_grace: float = 30.0         # seconds a running batch may finish on shutdown before it is re-queued
    publish_limit: int = 60              # publications per user per hour
    like_limit: int = 600                # likes per user per hour
    report_limit: int = 30               # reports per user per hour
    webhook_attempts: int = 8            # tries per webhook, 1 s, 2 s, 4 s ... apart
    webhook_retry_delay: float = 1.0     # seconds before the second try; doubled for each next one
    webhook_allow_private: bool = False  # allow webhooks to loopback and private addresses (tests, intranets)
    login_attempts: int = 10             # studio sign-ins per name and address per 5 minutes
    signup_attempts: int = 20            # studio accounts made per address per 5 minutes

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data).expanduser())      # a str from a caller is fine too
        if self.model is not None:
            object.__setattr__(self, "model", Path(self.model).expanduser())
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for name in ("port", "threads", "rate_limit", "daily_quota", "max_upload_bytes", "url_ttl",
                     "max_prompt_chars", "max_batch", "webhook_attempts", "job_heartbeat", "publish_limit",
                     "like_limit", "report_limit"):
            if getattr(self, name) < (0 if name == "port" else 1):
                raise ValueError(f"server setting {name} must be at least 1, got {getattr(self, name)!r}")
        if self.batch_wait < 0:
            raise ValueError(f"server setting batch_wait must be 0 or more seconds, got {self.batch_wait!r}")
        for name in ("rate_window", "shutdown_grace", "webhook_retry_delay"):
            if getattr(self, name) <= 0:
                raise ValueError(f"server setting {name} must be above 0 seconds, got {getattr(self, name)!r}")

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data / 'atelier.db'}"

    @property
    def max_request_bytes(self) -> int:
        """A whole request body: an image and a mask at the upload limit, plus 1 MiB of form fields."""
        return 2 * self.max_upload_bytes + 2**20

    def signing_secret(self) -> bytes:
        """The configured secret, or the one in DATA/secret, written (readable by its owner only) on first use."""
        if self.secret:
            return self.secret.encode()
        path = self.data / SECRET_FILE
        if not path.exists():
            self.data.mkdir(parents=True, exist_ok=True)
            try:
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                    file.write(secrets.token_hex(32))
            except FileExistsError:    # another process made it first: use theirs
                pass
        return path.read_text().strip().encode()


def load_settings(config: str | Path | None = None, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> ServerSettings:
    """Settings from the defaults, then the TOML file, then ATELIER_* variables of `env` (default
    os.environ), then `overrides` (command-line flags; None means not given)."""
    values: dict[str, Any] = {}
    if config is not None:
        with open(config, "rb") as file:
            data = tomllib.load(file)
        data = data.get("server", data)
        unknown = sorted(set(data) - _FIELDS.keys())
        if unknown:
            raise ValueError(f"{config}: unknown server settings {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
        values.update({name: _convert(name, value, str(config)) for name, value in data.items()})
    env = os.environ if env is None else env
    for name in _FIELDS:
        if (text := env.get(ENV_PREFIX + name.upper())) is not None:
            values[name] = _convert(name, text, f"${ENV_PREFIX}{name.upper()}")
    for name, value in overrides.items():
        if name not in _FIELDS:
            raise TypeError(f"unknown server setting {name!r}")
        if value is not None:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")
    return replace(ServerSettings(), **values)


_FIELDS = {f.name: f for f in fields(ServerSettings)}


def _convert(name: str, value: Any, source: str) -> Any:
    """`value` (from TOML, a variable's text or a flag) as field `name`'s type, or ValueError naming the source."""
    hint = typing.get_type_hints(ServerSettings)[name]
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] if isinstance(
        hint, types.UnionType) else [hint]
    if value is None or (isinstance(value, str) and value == "" and type(None) in typing.get_args(hint)):
        return None
    kind = kinds[0]
    try:
        if kind is Path:
            return Path(value).expanduser()
        if typing.get_origin(kind) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(item.strip() for item in items if item.strip())
        if kind is bool:
            words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
                     "off": False}
            if isinstance(value, bool):
                return value
            return words[str(value).strip().lower()]
        if isinstance(value, bool):
            raise TypeError
        if kind is int and isinstance(value, float):
            raise TypeError
        return kind(value)
    except (TypeError, ValueError, KeyError):
        raise ValueError(f"{source}: {name} must be {getattr(kind, '__name__', str(kind))}, got {value!r}") from None
