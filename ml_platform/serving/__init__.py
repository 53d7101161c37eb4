"""The HTTP endpoint (`ml-platform serve`): validation, release policies, hot swap, prediction log.

Modules: ``app`` (routes, auth, request flow), ``registry`` (what is served, hot swap,
canary routing), ``validation`` (records against the data contract), ``batching``
(micro-batches for scoring and log commits), ``log`` (prediction log and outcomes tables),
``outcomes`` (outcomes from requests and landed files), ``config`` and ``metrics``.
"""
