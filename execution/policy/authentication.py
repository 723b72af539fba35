"""Token authentication whose failures are throttled per client address.

DRF checks throttles after authentication, so a request with a wrong token is
answered 401 before any throttle sees it: a client could try tokens as fast as
the server answers. Here each failed attempt counts against the client
address's ``failed_authentication`` rate; past it the attempt is answered 429.
While the address is over its limit, a right token is refused too (429), so
that the answers tell a guesser nothing. That check is part of the token's own
lookup (a subquery), so an authenticated request pays no extra statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.db.models import Subquery
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from execution.policy.throttle_models import ThrottleBucket
from execution.policy.throttling import FAILED_AUTHENTICATION, FailedAuthenticationThrottle

if TYPE_CHECKING:
    from rest_framework.authtoken.models import Token
    from rest_framework.request import Request


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication``, with failed attempts throttled per client address."""

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
        if not self.throttle.enabled:
            return super().authenticate_credentials(key)
        model = cast("type[Token]", self.get_model())
        address_tat = ThrottleBucket.objects.filter(
            scope=FAILED_AUTHENTICATION, ident=self.throttle.get_ident(self.request)
        ).values("burst_tat")[:1]
        try:
            token = (
                model.objects.select_related("user")
                .annotate(failed_authentication_tat=Subquery(address_tat))
                .get(key=key)
            )
        except model.DoesNotExist as exc:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from exc
        self.throttle.refuse_if_blocked(
            self.request, token.failed_authentication_tat, user=token.user
        )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)
