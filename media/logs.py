"""Log output: readable lines, or one JSON object per line for a log collector (``logging.format: json``).

Ids a log entry is about go in ``extra=``, e.g. ``logger.info("...", extra={"room_id": r, "participant_id": p})``;
the JSON form carries every such field by name (room_id, participant_id, consult_id, node_id...).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any

FORMAT_VARIABLE = "HOICHAN_LOG_FORMAT"  # not a config key (no "__"): how a media worker learns the format

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self._role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": self._role,
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str, fmt: str, role: str) -> None:
    """Configure the root logger of this process; its media workers inherit the format through the environment."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    os.environ[FORMAT_VARIABLE] = fmt
