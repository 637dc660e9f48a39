"""Error types. Each message is one line naming the file, line or key at fault."""


class ZerologError(Exception):
    """Base of every error the pipeline reports to a user as a one-line message."""


class ConfigError(ZerologError, ValueError):
    """A params.yaml problem; the message names the file and the key."""


class DataError(ZerologError):
    """Bad input data: a missing or empty file, a line that does not parse, a share of unmatched lines too high."""


class DownloadError(DataError):
    """A download failed, was truncated, or an archive was unsafe."""


class ChecksumError(DownloadError):
    """A file's sha256 differs from the expected one."""
