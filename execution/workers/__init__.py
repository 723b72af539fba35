"""The worker fleet as the database sees it: one heartbeat row per ``db_worker`` process."""
