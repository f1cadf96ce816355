"""The SQLite store: the jobs table in a file, through APSW (the only place jobkit imports apsw).

:mod:`.schema` holds the DDL, :mod:`.migrations` knows the file, :mod:`.codec` turns rows
into values, :mod:`.queries` holds the SQL, :mod:`.store` the :class:`SqliteStore` and
:mod:`.waker` the :class:`SqliteWaker` it hands out.
"""

from jobkit.stores.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION
from jobkit.stores.sqlite.store import SqliteStore
from jobkit.stores.sqlite.waker import SqliteWaker

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteStore", "SqliteWaker"]
