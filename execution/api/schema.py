"""The execution request's schema: one branch per available plugin, with its own payload.

Built from the registry at each request for the schema, so an installed plugin
appears without code changes. Registered by ``ExecutionConfig.ready()``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema

from api.schema import JSON, register_component
from execution.api.serializers import ExecutionRequestSerializer, JobRequestSerializer
from execution.callbacks.models import CALLBACK_URL_MAX_LENGTH
from plugins.contract import Plugin
from plugins.models import PluginState
from plugins.registry import get_registry


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def plugin_input_reference(auto_schema: AutoSchema, plugin: Plugin) -> tuple[JSON, list[Any]]:
    """The plugin's Input JSON Schema as components, prefixed with the plugin's name.

    Returns the reference and the schema's examples. Titles are prefixed too: client
    generators name their classes after them, and two plugins' models may well share
    a class name (``Input``).
    """
    prefix = _camel(plugin.name)
    schema: JSON = plugin.Input.model_json_schema(
        ref_template=f"#/components/schemas/{prefix}{{model}}"
    )
    for name, definition in schema.pop("$defs", {}).items():
        register_component(
            auto_schema, f"{prefix}{name}", {**definition, "title": f"{prefix}{name}"}
        )
    reference = register_component(
        auto_schema, f"{prefix}Input", {**schema, "title": f"{prefix}Input"}
    )
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
    "pattern": "^https?://",
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
