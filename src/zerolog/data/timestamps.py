"""The one timestamp parser of stage parse: header texts to seconds since the epoch, as pandas reads them, fast.

Why a fast path: at full size (HDFS_v1, 11M lines) ``pandas.to_datetime(format=...)`` costs more than the rest of
the line accounting together. Values in the strict fixed-width form of the format (every field at its full width
and in its valid range, the literal characters exactly) are read here with vectorised arithmetic: for them pandas'
strptime reads the same fields (its first alternative of every directive takes the full width) and gives the same
nanoseconds, divided the same way. Every other value, and every value of a format with other directives, goes to
pandas itself, so odd inputs keep pandas' exact behaviour (tests/data/test_stream_parse.py compares both on 3,000
random valid and odd values per format).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Fixed-width strptime directives the fast path reads itself: width (None: %f, set per call) and the strict
#: RE2 pattern of a valid value.
_DIRECTIVES: dict[str, tuple[int | None, str]] = {
    "Y": (4, r"\d{4}"),
    "y": (2, r"\d{2}"),
    "m": (2, r"(?:0[1-9]|1[0-2])"),
    "d": (2, r"(?:0[1-9]|[12]\d|3[01])"),
    "H": (2, r"(?:[01]\d|2[0-3])"),
    "M": (2, r"[0-5]\d"),
    "S": (2, r"[0-5]\d"),
    "f": (None, ""),
}
_NANOSECONDS = {"H": 3_600 * 10**9, "M": 60 * 10**9, "S": 10**9}

#: ISO 8601 formats: pandas reads these with its own fast ISO parser, faster than the path below.
_ISO_FORMAT = re.compile(r"%Y-%m-%d(?:[ T]%H(?::%M(?::%S(?:\.%f)?)?)?)?")


#: The format of a time given as seconds since the epoch (``1117838570`` or ``1117838570.25``): Python's strptime
#: has no such directive, so it is read as a number here.
EPOCH_SECONDS = "%s"


def parse_timestamps(values: pd.Series, timestamp_format: str) -> pd.Series:
    """Seconds since the epoch (float64, same index; NaN where a value is missing or does not fit the format).

    Times are read as UTC: the logs carry no zone, and only differences and order matter downstream. The format
    ``%s`` alone means the value already is seconds since the epoch.
    """
    texts = values.tolist()
    present = np.array([isinstance(text, str) for text in texts], dtype=bool)
    result = np.full(len(texts), np.nan)
    if present.any():
        positions = np.flatnonzero(present)
        result[positions] = _seconds([texts[position] for position in positions.tolist()], timestamp_format)
    return pd.Series(result, index=values.index, dtype="float64")


def _pandas_seconds(texts: list[str], timestamp_format: str) -> np.ndarray:
    if timestamp_format == EPOCH_SECONDS:  # seconds as written (NaN where a value is not a number)
        return pd.to_numeric(pd.Series(texts, dtype="object"), errors="coerce").to_numpy(dtype=np.float64)
    parsed = pd.to_datetime(pd.Series(texts, dtype="object"), format=timestamp_format, errors="coerce", utc=True)
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def _timestamp_plan(timestamp_format: str) -> list[tuple[str, str]] | None:
    """The format as [("directive", letter) | ("literal", text)], or None if the fast path does not read it."""
    if _ISO_FORMAT.fullmatch(timestamp_format):
        return None
    plan: list[tuple[str, str]] = []
    position = 0
    while position < len(timestamp_format):
        character = timestamp_format[position]
        if character == "%":
            letter = timestamp_format[position + 1 : position + 2]
            if letter not in _DIRECTIVES:
                return None
            plan.append(("directive", letter))
            position += 2
        else:
            if not character.isascii():
                return None
            plan.append(("literal", character))
            position += 1
    letters = [value for kind, value in plan if kind == "directive"]
    if len(set(letters)) != len(letters) or not {"m", "d"} <= set(letters) or not {"Y", "y"} & set(letters):
        return None
    return plan


def _seconds(texts: list[str], timestamp_format: str) -> np.ndarray:
    """(values,) float64 seconds of present texts: fixed-width ones read here, the rest by pandas."""
    result = np.full(len(texts), np.nan)
    plan = _timestamp_plan(timestamp_format)
    fast = np.zeros(len(texts), dtype=bool)
    if plan is not None and texts:
        array = pa.array(texts, type=pa.string())
        fast, fraction_width = _fixed_width(array, plan)
        if fast.any():
            positions = np.flatnonzero(fast)
            seconds, valid = _fixed_width_seconds(pc.filter(array, pa.array(fast)), plan, fraction_width)
            result[positions[valid]] = seconds[valid]
            fast[positions[~valid]] = False
    rest = np.flatnonzero(~fast)
    if len(rest):
        result[rest] = _pandas_seconds([texts[index] for index in rest.tolist()], timestamp_format)
    return result


def _fixed_width(array: pa.Array, plan: list[tuple[str, str]]) -> tuple[np.ndarray, int]:
    """Which values are in the strict fixed-width form, at the commonest length; and that form's %f width."""
    lengths = pc.binary_length(array).to_numpy(zero_copy_only=False)
    width = int(np.bincount(lengths).argmax())
    fixed = sum(1 if kind == "literal" else _DIRECTIVES[value][0] or 0 for kind, value in plan)
    fraction_width = width - fixed
    has_fraction = any(value == "f" for kind, value in plan if kind == "directive")
    if has_fraction and not 1 <= fraction_width <= 9:
        return np.zeros(len(array), dtype=bool), 0
    pattern = (
        "^"
        + "".join(
            re.escape(value)
            if kind == "literal"
            else (rf"\d{{{fraction_width}}}" if value == "f" else _DIRECTIVES[value][1])
            for kind, value in plan
        )
        + "$"
    )
    matches = pc.match_substring_regex(array, pattern).to_numpy(zero_copy_only=False)
    return matches & (lengths == width), fraction_width


def _fixed_width_seconds(
    chosen: pa.Array, plan: list[tuple[str, str]], fraction_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of fixed-width ASCII values (all the same width) and whether each is a real date pandas can hold."""
    width = sum(1 if kind == "literal" else _DIRECTIVES[value][0] or fraction_width for kind, value in plan)
    offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int32)[chosen.offset : chosen.offset + len(chosen) + 1]
    data = np.frombuffer(chosen.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    digits = data.reshape(len(chosen), width).astype(np.int64) - ord("0")  # (values, width)
    fields: dict[str, np.ndarray] = {}
    column = 0
    for kind, value in plan:
        field_width = 1 if kind == "literal" else fraction_width if value == "f" else _DIRECTIVES[value][0] or 0
        if kind == "directive":
            number = np.zeros(len(chosen), dtype=np.int64)
            for offset in range(field_width):
                number = number * 10 + digits[:, column + offset]
            fields[value] = number
        column += field_width
    # without %Y, strptime's two-digit years: 69-99 -> 1900s, 00-68 -> 2000s
    year = fields["Y"] if "Y" in fields else np.where(fields["y"] <= 68, 2000, 1900) + fields["y"]
    month, day = fields["m"], fields["d"]
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[month - 1] + (leap & (month == 2))
    valid = (day <= month_days) & (year >= 1678) & (year <= 2261)  # pandas' nanosecond range, with margin
    # days since 1970-01-01 of a proleptic Gregorian date (civil-from-days inverse)
    shifted = year - (month <= 2)
    era = np.floor_divide(shifted, 400)
    year_of_era = shifted - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    nanoseconds = (era * 146_097 + day_of_era - 719_468) * 86_400 * 10**9
    for letter, scale in _NANOSECONDS.items():
        if letter in fields:
            nanoseconds = nanoseconds + fields[letter] * scale
    if "f" in fields:
        nanoseconds = nanoseconds + fields["f"] * 10 ** (9 - fraction_width)
    # as pandas: (timestamp - epoch) / Timedelta(seconds=1), an int64 / int64 true division
    return nanoseconds / np.int64(10**9), valid
