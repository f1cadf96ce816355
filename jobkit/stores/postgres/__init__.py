"""The PostgreSQL store: the jobs table in a schema of its own, through psycopg 3.

Installed with ``pip install "jobkit-queue[postgres]"``.

:mod:`.schema` holds the DDL and its versions, :mod:`.migrations` knows the schema,
:mod:`.queries` holds the SQL, :mod:`.connection` the pool and the server's clock,
:mod:`.errors` turns psycopg's errors into jobkit's,
:mod:`.store` the :class:`PostgresStore` and :mod:`.waker` the LISTEN/NOTIFY
:class:`PostgresWaker` it hands out.
"""

from jobkit.stores.postgres.schema import VERSION
from jobkit.stores.postgres.store import PostgresStore
from jobkit.stores.postgres.waker import PostgresWaker

__all__ = ["VERSION", "PostgresStore", "PostgresWaker"]
