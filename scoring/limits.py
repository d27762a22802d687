"""What reading one input file may cost, whatever the file declares or contains.

A hostile or careless file must not cost more than a bounded amount of memory and CPU: a
workbook that declares a million columns, a zip bomb, JSON nested ten thousand deep, or
millions of rows sent to a service that expects a district. The command line reads files with
the defaults; the service passes the limits of its settings (CREDIT_MAX_*, docs/security.md).
A file over a limit is a problem naming the limit, reported before the expensive work.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class ReadLimits:
    max_rows: int | None = None
    """Data rows in one file (None: no limit, as for the command line's own files)."""
    max_workbook_bytes: int = 512 * MiB
    """Uncompressed size of an .xlsx workbook's parts (a zip bomb is refused before it opens)."""
    max_columns: int = 1_000
    """Columns in one table, whatever a workbook's declared dimension says."""
    max_json_depth: int = 64
    """Nesting of a JSON input file."""
