"""Asynchronous jobs: the record in the database, the runner that batches them, the queues that
carry them, and webhooks."""
