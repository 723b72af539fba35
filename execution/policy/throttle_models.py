"""The state of the API's rate limits: one row per client of each throttle.

A row holds, for each of the throttle's two rates (a short burst and a long
sustained one), the rate's *theoretical arrival time* (GCRA, the generic cell
rate algorithm): the time at which the client's allowance would be whole
again. That one number is all a rate needs, so a check is one conditional
upsert of one row, atomic in the database across every process (see
``execution/policy/throttling.py``). A throttle with one rate leaves the other
column at a time long past.

Times are integers, microseconds since the epoch on the database's clock, so
that N requests at one instant add up to exactly N emission intervals.
"""

from __future__ import annotations

from django.db import models


class ThrottleBucket(models.Model):
    scope = models.CharField(max_length=32, help_text="Which throttle: execution, cancel, auth.")
    ident = models.CharField(max_length=64, help_text="Whose: a user's id or a client address.")
    burst_tat = models.BigIntegerField(help_text="The burst rate's arrival time (µs).")
    sustained_tat = models.BigIntegerField(help_text="The sustained rate's arrival time (µs).")
    refused = models.IntegerField(default=0, help_text="Requests refused since the last allowed.")
    unrecorded = models.IntegerField(
        default=0, help_text="Refusals since the last one put on the audit trail."
    )
    noted_at = models.BigIntegerField(
        null=True, help_text="When a refusal of this client was last put on the audit trail (µs)."
    )

    class Meta:
        app_label = "execution"
        constraints = [
            models.UniqueConstraint(fields=["scope", "ident"], name="throttle_bucket_client")
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.ident}"
