"""The server's data access: one module per aggregate, each a set of plain functions that take a
SQLAlchemy Session and hold its queries, named for what they return or do. Routers and services
call these and hold no SQL (tests/test_layers.py checks the routers); the caller's session owns the
transaction (a request's session commits before the answer is sent).

users (users, API keys, studio sessions, account deletion), assets, community (likes, reports,
feedback, the gallery and profiles, the training export's queries), usage (the daily counters),
paging (newest-first cursors). The jobs table's store is atelier.server.jobs.store."""
