"""Query parameters of GET /v1/jobs: filters, ordering and page size.

django-filter declares them, so they check their values and appear in the schema by themselves.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import django_filters
from django import forms
from django.utils.encoding import force_str
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from execution.models import Job, JobStatus
from plugins.errors.error_envelope import JOB_ERROR_TYPES


class _ChoicesField(django_filters.fields.MultipleChoiceField):
    def to_python(self, value: Any) -> list[str]:
        # ?status= filters nothing, as an empty value does for every other filter.
        return [choice for choice in super().to_python(value) if choice != ""]


class MultipleChoicesFilter(django_filters.MultipleChoiceFilter):
    """One or more choices, the parameter repeated; an empty value filters nothing."""

    field_class = _ChoicesField


class _DateTimeField(django_filters.fields.IsoDateTimeField):
    def to_python(self, value: Any) -> Any:
        moment = super().to_python(value)
        try:
            if moment is not None:
                moment.astimezone(UTC)  # the database compares in UTC
        except OverflowError as exc:  # a date that leaves the calendar once moved to UTC
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from exc
        return moment


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date and time; one past the calendar's ends is invalid, not a crash."""

    field_class = _DateTimeField


class StableOrderingFilter(django_filters.OrderingFilter):
    """Ordering by a field many jobs share still pages stably: ties go newest first."""

    def filter(self, qs: Any, value: Any) -> Any:
        ordered = super().filter(qs, value)
        if value:
            ordered = ordered.order_by(*ordered.query.order_by, "-created_at", "-id")
        return ordered


class JobFilterForm(forms.Form):
    def clean_ordering(self) -> list[str]:
        # "?ordering=" orders by the default; "?ordering=status," names an empty field.
        ordering: list[str] = self.cleaned_data.get("ordering") or []
        if "" in ordering:
            raise forms.ValidationError("Each field to order by must be named.", code="invalid")
        return ordering


class JobFilter(django_filters.FilterSet):
    status = MultipleChoicesFilter(
        choices=JobStatus.choices, help_text="One or more statuses (repeat the parameter)."
    )
    plugin = django_filters.CharFilter(field_name="plugin_name", help_text="A plugin's name.")
    requested_by = django_filters.CharFilter(
        field_name="requested_by__username",
        help_text="The requester's username (for users who see every job).",
    )
    created_after = DateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = DateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )
    error_type = django_filters.ChoiceFilter(
        field_name="error__error__type",
        choices=[(kind.value, kind.value) for kind in JOB_ERROR_TYPES],
        help_text="The type of the job's error.",
    )
    ordering = StableOrderingFilter(
        fields=(
            ("created_at", "created_at"),
            ("finished_at", "finished_at"),
            ("elapsed_ms", "elapsed_ms"),
            ("status", "status"),
            ("plugin_name", "plugin"),
        ),
        help_text="Sort by a field; a leading '-' reverses it. Default: -created_at.",
    )

    class Meta:
        model = Job
        form = JobFilterForm
        fields: list[str] = []


class JobPagination(PageNumberPagination):
    """Pages of 50 by default; ``page_size`` above 200 is taken as 200, below 1 refused."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()  # a page is a number, as the schema says

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        # A page that is not a number is a bad request; one past the end, a 404 (DRF's).
        page = request.query_params.get(self.page_query_param, "")
        number = page.isascii() and page.isdigit() and int(page) >= 1
        if not number and page != "":
            raise ValidationError({self.page_query_param: ["Must be a positive integer."]})
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError({self.page_size_query_param: ["Must be a positive integer."]})
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            parameter["allowEmptyValue"] = True  # as if not given, like every filter
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = force_str(
                    f"Jobs per page: {self.page_size} if not given; more than "
                    f"{self.max_page_size} is taken as {self.max_page_size}."
                )
        return parameters
