"""How every process of the platform writes its log lines: plain text, or ECS JSON for Elasticsearch.

Operations teams ship logs to Elasticsearch with Filebeat or Fluent Bit and read them in
Kibana; those tools want one JSON object per line in the Elastic Common Schema (ECS), so
with ``ML_PLATFORM_LOG_FORMAT=json`` every line is written by ecs-logging's formatter, with
the application name and the site on each. Text stays the default because people read a
laptop's console.

Each kind of process calls ``configure_logging`` once at start (again is harmless: the
platform's handler is replaced, never added twice): the CLI and each endpoint worker
configure the whole process, so uvicorn's and libraries' lines share the format; the
Dagster code location configures only the ``ml_platform`` loggers, because Dagster owns
the rest of its processes' logging (its own lines follow the instance's ``python_logs``).
"""

from __future__ import annotations

import logging
import sys

import ecs_logging

from ml_platform.settings import Settings, get_settings

APPLICATION = "ml_platform"
PLATFORM_LOGGER = "ml_platform"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class PlatformHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the moment of each line.

    A handler that kept the stream it was created with would write to a closed file once
    a test harness or a daemon swaps standard error; stderr is also where container log
    collectors (Filebeat's container input, Fluent Bit's tail of the runtime's files) read.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler assigns it; the current stderr always wins
        pass


def log_level(settings: Settings) -> int:
    """The configured level, else INFO for JSON (shipped, filtered in Kibana) and WARNING for text (read by people)."""
    if settings.log_level:
        return logging.getLevelName(settings.log_level)
    return logging.INFO if settings.log_format == "json" else logging.WARNING


# Thread and origin fields cost time on every line and tell an operator nothing here.
EXCLUDED_FIELDS = ("process.thread", "log.origin", "log.original")


def ecs_extra(settings: Settings) -> dict:
    """Fields on every JSON line: the application (ECS ``service.name``) and the site, when set."""
    extra = {"service.name": APPLICATION}
    if settings.site:
        extra["labels.site"] = settings.site
    return extra


def formatter(settings: Settings) -> logging.Formatter:
    """ECS JSON with the application and site on every line, or a plain one-line text format."""
    if settings.log_format != "json":
        return logging.Formatter(TEXT_FORMAT)
    return ecs_logging.StdlibFormatter(extra=ecs_extra(settings), exclude_fields=list(EXCLUDED_FIELDS))


def configure_logging(logger_name: str = "", settings: Settings | None = None) -> logging.Logger:
    """Send ``logger_name``'s lines (``""``: the whole process's) to stderr in the configured format and level.

    For a named logger, propagation stops, so a line is written once and in this format even
    when the host process (Dagster's) has handlers of its own on the root logger.
    """
    settings = settings or get_settings()
    target = logging.getLogger(logger_name or None)
    for old in [h for h in target.handlers if isinstance(h, PlatformHandler)]:
        target.removeHandler(old)
    handler = PlatformHandler()
    handler.setFormatter(formatter(settings))
    target.addHandler(handler)
    level = log_level(settings)
    target.setLevel(level)
    logging.getLogger(PLATFORM_LOGGER).setLevel(level)
    if logger_name:
        target.propagate = False
    return target


def is_json(settings: Settings | None = None) -> bool:
    """Whether lines are JSON: then nothing but JSON may go to the log stream (a collector parses each line)."""
    return (settings or get_settings()).log_format == "json"
