"""The SQLite backend (the embedded default): one database file per kind under `storage.path`,
WAL mode so readers (the CLI) never block the daemon's writer; CDRs are group-committed by one
writer thread per database (`writer.py`)."""
