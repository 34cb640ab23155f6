"""cfgd from Python through a client generated from its OpenAPI document.

`openapi-python-client` writes the `cfgd_client` package from
`GET /openapi.json` (docs/server.md, "A client from the OpenAPI document");
this script uses it against a live cfgd: it writes a value, reads it back
with its ETag, refuses a stale write, stores a flag and evaluates it.
crates/cfgd-server/tests/openapi.rs generates the client and runs this in
`make test`.

    CFGD_URL=http://127.0.0.1:8080 CFGD_TOKEN=... CFGD_NAMESPACE=demo python client.py
"""

import os

from cfgd_client import AuthenticatedClient
from cfgd_client.api.config import get_config, put_config
from cfgd_client.api.flags import put_flag
from cfgd_client.api.ofrep import ofrep_evaluate_flag
from cfgd_client.models import ErrorBody, EvaluationRequest, FlagDefinition, Written

url = os.environ.get("CFGD_URL", "http://127.0.0.1:8080")
ns = os.environ.get("CFGD_NAMESPACE", "demo")
client = AuthenticatedClient(base_url=url, token=os.environ.get("CFGD_TOKEN", ""))

# A value is any JSON; the answer names its revision, the ETag.
written = put_config.sync(ns, "checkout/limits", client=client, body={"max_items": 50})
assert isinstance(written, Written), written
print(f"wrote checkout/limits at revision {written.revision}")

read = get_config.sync_detailed(ns, "checkout/limits", client=client)
assert read.status_code == 200 and read.parsed == {"max_items": 50}, read
etag = read.headers["etag"]
print(f"read it back: {read.parsed}, ETag {etag}")

# A write at that ETag succeeds once; the second, now stale, gets 412.
fresh = put_config.sync(ns, "checkout/limits", client=client, body={"max_items": 60}, if_match=etag)
assert isinstance(fresh, Written), fresh
stale = put_config.sync_detailed(ns, "checkout/limits", client=client, body={"max_items": 70}, if_match=etag)
assert stale.status_code == 412 and isinstance(stale.parsed, ErrorBody), stale
print(f"a stale write: {stale.status_code} {stale.parsed.error.code}")

# A flag, as flagd defines it, then evaluated through OFREP.
flag = FlagDefinition.from_dict(
    {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", "off"]},
    }
)
stored = put_flag.sync(ns, "new-checkout", client=client, body=flag)
assert isinstance(stored, Written), stored
evaluated = ofrep_evaluate_flag.sync(
    "new-checkout",
    client=client,
    x_cfgd_namespace=ns,
    body=EvaluationRequest.from_dict({"context": {"targetingKey": "u1", "plan": "pro"}}),
)
assert evaluated.value is True and evaluated.variant == "on", evaluated
print(f"new-checkout for a pro user: {evaluated.variant} ({evaluated.reason})")
