"""zerolog.data: the data layer (download, parse, sessionize), and the layout facts its stages and the params checks
share."""

from __future__ import annotations

import re


def log_format_fields(log_format: str) -> list[str]:
    """The ``<Field>`` names of a loghub log format, in order."""
    return re.findall(r"<([^<>]+)>", log_format)


#: Header fields stored in lines.parquet under a lower-case name (stage parse); group_by may use either name.
LOWER_CASE_FIELDS = {"Level": "level", "Component": "component"}

#: Columns of lines.parquet (stage parse) that no other log-format field may be named after.
RESERVED_LINE_COLUMNS = (
    "file_index", "line_number", "timestamp", "level", "component", "content",
    "event_id", "template", "label", "status", "session_key",
)  # fmt: skip

#: Which ``files`` keys each dataset kind needs (sessions: one of the alternatives).
DATASET_FILES: dict[str, list[tuple[str, ...]]] = {
    "raw": [("logs",)],
    "events": [("events", "templates")],
    "sessions": [
        ("normal", "abnormal", "templates"),
        ("sessions",),
        ("train", "test_normal", "test_abnormal", "templates"),
    ],
}
