"""Evaluates cases with openfeature-flagd-core 2.x (flagd's v3 fractional
bucketing), for cfgd's differential test (crates/cfgd/tests/differential.rs).

stdin:  {"document": "<flagd JSON text>", "cases": [{"key", "context"}]}
stdout: [{"value", "variant", "reason"}], one per case; a case that raises
        gives the caller's default with reason ERROR, as the OpenFeature SDK
        turns it.
"""

import json
import logging
import sys

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

# The core logs every bucketing value it refuses; the test makes thousands.
logging.disable(logging.CRITICAL)

request = json.load(sys.stdin)
core = FlagdCore()
core.set_flags(request["document"])

results = []
for case in request["cases"]:
    attributes = dict(case["context"])
    targeting_key = attributes.pop("targetingKey", None)
    context = EvaluationContext(targeting_key=targeting_key, attributes=attributes)
    try:
        r = core.resolve_string_value(case["key"], "fallback", context)
        results.append({"value": r.value, "variant": r.variant, "reason": str(getattr(r.reason, "value", r.reason))})
    except Exception:  # noqa: BLE001 - the SDK catches every error too
        results.append({"value": "fallback", "variant": None, "reason": "ERROR"})
json.dump(results, sys.stdout)
