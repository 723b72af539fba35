"""Example plugins shipped with the project, registered through entry points."""
