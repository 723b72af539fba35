"""Token authentication whose failures are throttled per client address.

DRF checks throttles after authentication, so a request with a wrong token is
answered 401 before any throttle sees it: a client could try tokens as fast as
the server answers. Here each failed attempt counts against the client
address's ``failed_authentication`` rate; past it the attempt is answered 429.
While the address is over its limit, a right token is refused too (429), so
that the answers tell a guesser nothing. That check is part of the token's own
lookup (a subquery), so an authenticated request pays no extra statement.

Tokens are kept as digests (``execution/policy/token_models.py``): the lookup
is by the SHA-256 of the presented value, and an expired or revoked token is a
failed authentication like a wrong one (401, and it counts against the rate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.db.models import Subquery
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from execution.policy.throttle_models import ThrottleBucket
from execution.policy.throttling import FAILED_AUTHENTICATION, FailedAuthenticationThrottle
from execution.policy.token_models import ApiToken
from execution.policy.tokens import refusal, token_digest

if TYPE_CHECKING:
    from rest_framework.request import Request


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication`` over hashed tokens, failed attempts throttled per address."""

    model = ApiToken

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        self.request = request
        self.throttle = FailedAuthenticationThrottle()
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            if self.throttle.enabled:
                self.throttle.allow_request(request, None)  # raises RateLimited past the limit
            raise

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        tokens = ApiToken.objects.select_related("user")
        if self.throttle.enabled:
            address_tat = ThrottleBucket.objects.filter(
                scope=FAILED_AUTHENTICATION, ident=self.throttle.get_ident(self.request)
            ).values("burst_tat")[:1]
            tokens = tokens.annotate(failed_authentication_tat=Subquery(address_tat))
        try:
            token = tokens.get(digest=token_digest(key))
        except ApiToken.DoesNotExist as exc:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from exc
        if self.throttle.enabled:
            self.throttle.refuse_if_blocked(
                self.request, cast(Any, token).failed_authentication_tat, user=token.user
            )
        reason = refusal(token, timezone.now())
        if reason is not None:
            raise exceptions.AuthenticationFailed(reason)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)
