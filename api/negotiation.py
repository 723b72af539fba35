"""Content negotiation: an unknown ``?format=`` is a 406, like an unknown Accept."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, except that a format no renderer has is NotAcceptable.

    DRF answers it with a 404, which says the resource does not exist; it does, in
    other formats.
    """

    def filter_renderers(
        self, renderers: Iterable[BaseRenderer], format: str
    ) -> list[BaseRenderer]:
        try:
            return list(super().filter_renderers(renderers, format))
        except Http404 as exc:
            raise NotAcceptable(f"No format {format[:50]!r}; this API answers JSON.") from exc
