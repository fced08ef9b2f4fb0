"""JSON logs (``DJANGO_LOG_FORMAT=json``): one JSON object per line, for a log shipper.

Only the record's own fields are written (time, level, logger, message, exception), never
the extras Django attaches (the HTTP request, with its headers and the client's address).
The messages themselves carry no secret, requester hash or address: the code that logs takes
care of that, and tests/test_logging.py checks it along a requester's whole path.
"""

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
