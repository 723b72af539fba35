"""The audit trail: an append-only, hash-chained record of every governed event.

``recorder`` writes entries (one INSERT, inside the caller's transaction);
``chain`` seals them into the chain, verifies it and prunes it; ``sealer`` runs
the sealing in the background of each web process and worker.
"""
