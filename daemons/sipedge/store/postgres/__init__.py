"""The PostgreSQL backend (storage.backend: postgresql), for fleets: CDRs and registrations of
every edge in one database. CDRs go through a local SQLite spool (`cdr.py`) so calls never
wait for the server; all statements run on a runner thread with an asyncpg pool
(`runner.py`); the schema is versioned (`schema.py`). See docs/storage.md."""
