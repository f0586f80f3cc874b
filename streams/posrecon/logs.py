"""Structured (JSON lines) logging; every message passes the card-number scrubber."""

from __future__ import annotations

import json
import logging
import sys
import time

from posrecon.engine.pan import scrub_text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update({k: scrub_text(str(v)) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info:
            doc["exc"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(doc, default=str)


def setup_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
