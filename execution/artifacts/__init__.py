"""A job's artifacts: the files its plugin returned with its result (plugins/artifacts.py).

* models.py    JobArtifact: one row per file, with its size, SHA-256 and where it is stored
* services.py  storing, recording, reading and deleting them (Django's storage API)
"""
