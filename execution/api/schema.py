"""The execution API's per-plugin shapes: one branch per available plugin.

The request carries that plugin's own payload (its ``Input``); a result and a job
carry its own ``result`` (its ``Output``). Built from the registry at each request
for the schema, so an installed plugin appears without code changes. Registered by
``ExecutionConfig.ready()``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from api.schema import JSON, register_component
from execution.api.serializers import (
    ExecutionRequestSerializer,
    ExecutionResultSerializer,
    JobRequestSerializer,
    JobSerializer,
)
from execution.callbacks.destinations import CALLBACK_URL_PATTERN
from execution.callbacks.models import CALLBACK_URL_MAX_LENGTH
from plugins.contract import Plugin
from plugins.models import PluginState
from plugins.registry import get_registry


def _camel(name: str) -> str:
    """``text_stats`` -> ``TextStats``: the prefix of a plugin's components.

    Different names never meet in one prefix (``foo`` and ``foo_``, ``a1`` and ``a_1``
    would, and one plugin would be given the other's schemas): an underscore stays
    where dropping it would lose where a part starts (an empty part, or a digit).
    """
    return "".join(
        "_" + part if not part or part[0].isdigit() else part.capitalize()
        for part in name.split("_")
    )


def available_plugins() -> list[Plugin]:
    """The plugins a client can run now, in the registry's order."""
    return [
        entry.plugin
        for entry in get_registry().get_status()
        if entry.state == PluginState.AVAILABLE and entry.plugin is not None
    ]


def _register_model(
    auto_schema: AutoSchema,
    prefix: str,
    model: type[BaseModel],
    name: str,
    mode: JsonSchemaMode = "validation",
) -> tuple[JSON, JSON]:
    """``model``'s JSON Schema as the component ``name``, its $defs under ``prefix``.

    Titles are prefixed too: client generators name their classes after them, and
    two plugins' models may well share a class name (``Input``). ``mode``: what the
    model accepts (an Input) or what it gives (an Output, with its computed fields).
    """
    schema: JSON = model.model_json_schema(
        ref_template=f"#/components/schemas/{prefix}{{model}}", mode=mode
    )
    for def_name, definition in schema.pop("$defs", {}).items():
        register_component(
            auto_schema, f"{prefix}{def_name}", {**definition, "title": f"{prefix}{def_name}"}
        )
    return register_component(auto_schema, name, {**schema, "title": name}), schema


def plugin_output_reference(auto_schema: AutoSchema, plugin: Plugin) -> JSON:
    """The plugin's Output JSON Schema as the component ``<Plugin>Output``.

    The same schema as ``output_schema`` in ``/v1/plugins`` (checked at registration).
    Its nested models are named ``<Plugin>Output<Model>``, apart from the Input's: two
    different classes of one name must not share a component.
    """
    prefix = _camel(plugin.name)
    reference, _ = _register_model(
        auto_schema, f"{prefix}Output", plugin.Output, f"{prefix}Output", mode="serialization"
    )
    return reference


def plugin_input_reference(auto_schema: AutoSchema, plugin: Plugin) -> tuple[JSON, list[Any]]:
    """The plugin's Input JSON Schema as components, prefixed with the plugin's name.

    Returns the reference and the schema's examples.
    """
    prefix = _camel(plugin.name)
    reference, schema = _register_model(auto_schema, prefix, plugin.Input, f"{prefix}Input")
    return reference, list(schema.get("examples", []))


PLUGIN_VERSION_PROPERTY: JSON = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "description": "Run only this version of the plugin. Another version than the one installed "
    "is refused (400 PluginVersionMismatch); if the plugin is upgraded before the job runs, "
    "the job fails with PluginVersionMismatch and runs nothing.",
}


# POST /v1/jobs only (docs/api.md, "Completion callbacks"). Which hosts are allowed is
# the server's configuration, not the schema's: a URL elsewhere is a 400 ValidationError.
CALLBACK_URL_PROPERTY: JSON = {
    "type": "string",
    "format": "uri",
    "pattern": CALLBACK_URL_PATTERN,
    "maxLength": CALLBACK_URL_MAX_LENGTH,
    "description": "Where to POST the job, signed (X-Signature), once it is final: an http(s) "
    "URL on a host of the server's CALLBACK_ALLOWED_HOSTS.",
}


class ExecutionRequestExtension(OpenApiSerializerExtension):
    """``{"plugin", "payload"}`` as a ``oneOf`` on ``plugin``: each plugin's own payload."""

    target_class = ExecutionRequestSerializer
    match_subclasses = True  # JobRequestSerializer: the same, with callback_url

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> JSON:
        target = self.target if isinstance(self.target, type) else type(self.target)
        callback: JSON = {}
        if issubclass(target, JobRequestSerializer):
            callback = {"callback_url": CALLBACK_URL_PROPERTY}
        kind = "JobRequest" if callback else "ExecutionRequest"
        branches: dict[str, str] = {}
        examples: list[JSON] = []
        for entry in get_registry().get_status():
            if entry.state != PluginState.AVAILABLE or entry.plugin is None:
                continue
            # Its schema was checked at registration.
            payload, input_examples = plugin_input_reference(auto_schema, entry.plugin)
            branch = {
                "type": "object",
                "description": entry.plugin.description,
                "properties": {
                    "plugin": {"type": "string", "const": entry.name},
                    "payload": payload,
                    "plugin_version": {**PLUGIN_VERSION_PROPERTY, "enum": [entry.plugin.version]},
                    **callback,
                },
                "required": ["plugin", "payload"],
                "additionalProperties": False,
            }
            name = f"{_camel(entry.name)}{kind}"
            branches[entry.name] = register_component(auto_schema, name, branch)["$ref"]
            examples += [{"plugin": entry.name, "payload": example} for example in input_examples]
        choice: JSON = {}
        if branches:  # with no plugin available there is nothing to choose (oneOf [] is invalid)
            choice = {
                "oneOf": [{"$ref": ref} for ref in branches.values()],
                "discriminator": {"propertyName": "plugin", "mapping": branches},
            }
        return {
            "type": "object",
            "properties": {
                "plugin": {"type": "string", "description": "An available plugin's name."},
                "payload": {"type": "object", "description": "Its input, per its schema."},
                "plugin_version": PLUGIN_VERSION_PROPERTY,
                **callback,
            },
            "required": ["plugin", "payload"],
            **choice,
            **({"examples": examples} if examples else {}),
        }


class PerPluginResultExtension(OpenApiSerializerExtension):
    """A body that names its plugin, as a ``oneOf`` on ``plugin``: each its own ``result``.

    Each available plugin gets a branch (``<Plugin><Body>``) whose ``plugin`` is that
    name and whose ``result`` is that plugin's Output, so a generated client has a
    typed class per plugin. A job of a plugin not available now (uninstalled, or
    UNAVAILABLE) still exists: it matches the one branch outside the mapping,
    ``<Body>OfUnlistedPlugin``, whose result is any object.
    """

    body_name: str
    result_nullable = False

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> JSON:
        body: JSON = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        name = self.body_name
        plugins = available_plugins()
        if not plugins:
            return body
        mapping: dict[str, str] = {}
        for plugin in plugins:
            branch = self._branch(
                body, {"const": plugin.name}, plugin_output_reference(auto_schema, plugin)
            )
            branch["description"] = plugin.description
            component = f"{_camel(plugin.name)}{name}"
            mapping[plugin.name] = register_component(auto_schema, component, branch)["$ref"]
        unlisted = self._branch(
            body, {"not": {"enum": list(mapping)}}, {"type": "object", "additionalProperties": True}
        )
        unlisted["description"] = (
            "Of a plugin that is not available now (uninstalled, or UNAVAILABLE): "
            "its result is untyped."
        )
        fallback = register_component(auto_schema, f"{name}OfUnlistedPlugin", unlisted)["$ref"]
        return {
            "oneOf": [*({"$ref": ref} for ref in mapping.values()), {"$ref": fallback}],
            "discriminator": {"propertyName": "plugin", "mapping": mapping},
        }

    def _branch(self, body: JSON, plugin: JSON, result: JSON) -> JSON:
        properties = body["properties"]
        if self.result_nullable:
            result = {"oneOf": [result, {"type": "null"}]}
        return {
            **body,
            "properties": {
                **properties,
                "plugin": {**properties["plugin"], **plugin},
                "result": {**result, "description": properties["result"].get("description", "")},
            },
        }


class ExecutionResultExtension(PerPluginResultExtension):
    target_class = ExecutionResultSerializer
    body_name = "ExecutionResult"


class JobResultExtension(PerPluginResultExtension):
    target_class = JobSerializer
    body_name = "Job"
    result_nullable = True
