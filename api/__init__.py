"""The HTTP layer every endpoint shares: how errors leave, how bodies are read, the schema.

Layering, lowest first; each imports only from the layers below it:

1. ``plugins.errors`` (the error envelope, execution's error types) and
   ``plugins.validation.json_values`` (values every database stores): plain
   Python, no HTTP. The rest of ``plugins/``, ``plugins/api/`` included, never
   imports ``api/``: its endpoints raise DRF exceptions, which this layer's
   handler (configured in settings) turns into envelopes.
2. ``api/`` (this package): Django, DRF, drf-spectacular and layer 1 only. It
   knows no app: what the schema says about executions lives in
   ``execution/api/schema.py``.
3. ``execution/`` and its endpoints, ``execution/api/``, which use this layer.
4. ``project/``: settings and URLs, the wiring.

Modules: ``errors`` (the protocol's error types and the schema's union of all
types), ``responses`` (``envelope_response``, the one builder of error bodies),
``exceptions`` (the exception handler), ``http`` (Django's own error pages under
the API), ``wsgi`` (chunked request bodies), ``parsers``, ``negotiation``,
``schema`` (the AutoSchema and the envelope's components), ``views`` (the
schema's pages).
"""
