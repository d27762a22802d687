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
    """The limits `scoring.input_files` reads within (the defaults are the command line's)."""

    max_rows: int | None = None
    """Data rows in one file (None: no limit, as for the command line's own files). Checked as
    rows are read (CSV, JSON, .xlsx) or from the metadata (Parquet); an .xlsx row numbered
    beyond Excel's last row (1,048,576) is damage whatever this says."""
    max_workbook_bytes: int = 512 * MiB
    """Uncompressed size of an .xlsx workbook's parts, as its zip declares them, checked before
    anything is opened: a zip bomb is refused unread (zipfile never reads past a declared
    size). Memory while reading is several times what is read, so this bounds it too."""
    max_decoded_bytes: int | None = None
    """Data in a Parquet file once decoded, which can be thousands of times its size on disk
    (None: no limit, for the command line's own files, a nation's findings among them)."""
    max_columns: int = 1_000
    """Columns in one table, whatever a workbook's declared dimension says: a CSV header, a
    JSON file's keys, a Parquet schema, the cells of an .xlsx row, counted as they arrive.
    A row of countless cells is refused before it is built (CSV: more than 64 commas per
    column in one record; .xlsx: more than 64 XML elements per column in one row)."""
    max_json_depth: int = 64
    """Nesting of a JSON input file (a file of rows needs 2: a list of objects). Input nested
    deeper than Python's parser goes (its recursion limit) is refused the same way."""
