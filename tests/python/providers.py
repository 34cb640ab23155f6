"""OpenFeature's stock Python flagd provider (openfeature-provider-flagd 0.6.1,
which evaluates in-process with openfeature-flagd-core 2.0.0 and so with
flagd's v3 fractional bucketing), unchanged, against cfgd's gRPC listener:
in-process (flagd.sync.v1) and RPC (flagd.evaluation.v2). Run by
crates/cfgd-server/tests/flagd_grpc.rs with a real cfgd and etcd.

It puts the namespaces on v3 (`cfgctl ns set`), then checks that, for every
flag and test context, the provider in-process, the provider over RPC,
cfgd's OFREP and `cfgctl flag eval` all give the same answer.

Environment: CFGD_GRPC (host:port), CFGD_URL (cfgd's HTTP), CFGD_TOKEN (a
token that may read every namespace), CFGD_CFGCTL and CFGD_ETCD (cfgctl and
the etcd endpoints), CFGD_TESTBED ("1" when the flagd-testbed flags are in
namespace "testbed").
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider import ProviderStatus

logging.disable(logging.CRITICAL)

HOST, PORT = os.environ["CFGD_GRPC"].rsplit(":", 1)
URL = os.environ["CFGD_URL"]
TOKEN = os.environ["CFGD_TOKEN"]


def cfgctl(*args):
    return subprocess.run(
        [os.environ["CFGD_CFGCTL"], "--endpoints", os.environ["CFGD_ETCD"], *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def ofrep(namespace, key, context):
    request = urllib.request.Request(
        f"{URL}/ofrep/v1/evaluate/flags/{key}",
        data=json.dumps({"context": context}).encode(),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "X-Cfgd-Namespace": namespace,
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def flagd_json(namespace):
    request = urllib.request.Request(
        f"{URL}/v1/namespaces/{namespace}/flagd.json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request) as reply:
        return json.load(reply)["flags"]


def provider(domain, resolver, namespace):
    p = FlagdProvider(
        host=HOST,
        port=int(PORT),
        tls=False,
        resolver_type=resolver,
        selector=f"flagSetId={namespace}",
        cache=CacheType.DISABLED,
        deadline_ms=5000,
    )
    api.set_provider(p, domain)
    client = api.get_client(domain)
    deadline = time.time() + 15
    while client.get_provider_status() != ProviderStatus.READY:
        if time.time() > deadline:
            raise AssertionError(f"{domain}: provider not ready: {client.get_provider_status()}")
        time.sleep(0.05)
    return client


def default_for(variants):
    values = list(variants.values())
    if values and all(isinstance(v, bool) for v in values):
        return False
    if values and all(isinstance(v, str) for v in values):
        return "default"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return -1.0
    return {}


def details(client, key, fallback, context):
    attributes = dict(context)
    ctx = EvaluationContext(targeting_key=attributes.pop("targetingKey", None), attributes=attributes)
    if isinstance(fallback, bool):
        return client.get_boolean_details(key, fallback, ctx)
    if isinstance(fallback, str):
        return client.get_string_details(key, fallback, ctx)
    if isinstance(fallback, float):
        return client.get_float_details(key, fallback, ctx)
    return client.get_object_details(key, fallback, ctx)


def same_value(a, b):
    """Equal as JSON, where 100 and 100.0 are one number (RPC sends doubles)."""
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, number) and isinstance(b, number):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


# Bucketing values of every type: strings, whole and fractional numbers
# (which RPC sends as doubles), booleans, arrays and objects.
BASE_CONTEXTS = [
    {},
    {"targetingKey": "user-1"},
    {"targetingKey": "user-2", "email": "ballmer@macrosoft.com", "id": 42},
    {"targetingKey": "user-3", "color": "yellow", "version": "1.2.3", "age": 30, "customer": True},
    {"targetingKey": "user-4", "email": "someone@faas.com", "fn": "yellow", "lang": "de", "id": 42.5},
    {"targetingKey": "käse", "id": -7, "beta": False, "tags": ["a", 1.5, True], "user": {"tier": "gold", "n": 3}},
    {"targetingKey": "user-6", "id": 1e21, "beta": True, "tags": [], "user": {"n": 0.1, "z": None}},
]
# Many more users for the fractional flags of our own.
CONTEXTS = BASE_CONTEXTS + [
    {"targetingKey": f"user-{i}", "email": f"u{i}@example.com", "id": i * 7, "ratio": i / 8, "beta": i % 2 == 0}
    for i in range(7, 40)
]

OWN_FLAGS = {
    "split-shorthand": {"fractional": [["a", 25], ["b", 25], ["c", 50]]},
    "split-email": {"fractional": [{"var": "email"}, ["a", 1], ["b", 1], ["c", 1]]},
    "split-number": {"fractional": [{"var": "id"}, ["a", 10], ["b", 20], ["c", 70]]},
    "split-ratio": {"fractional": [{"var": "ratio"}, ["a", 50], ["b", 50]]},
    "split-bool": {"fractional": [{"var": "beta"}, ["a", 50], ["b", 50]]},
    "split-object": {"fractional": [{"var": "user"}, ["a", 1], ["b", 1], ["c", 1]]},
    "split-array": {"fractional": [{"var": "tags"}, ["a", 1], ["b", 1]]},
    "split-in-if": {"if": [{"var": "email"}, {"fractional": [{"var": "email"}, ["a", 1], ["b", 1]]}, "c"]},
}


def seed_own_flags():
    with tempfile.TemporaryDirectory() as dir:
        for name, targeting in OWN_FLAGS.items():
            path = os.path.join(dir, f"{name}.json")
            with open(path, "w") as f:
                json.dump(
                    {
                        "state": "ENABLED",
                        "variants": {"a": "a", "b": "b", "c": "c"},
                        "defaultVariant": "c",
                        "targeting": targeting,
                    },
                    f,
                )
            cfgctl("-n", "prod", "flag", "set", name, "-f", path)


def cfgctl_variants(namespace, keys):
    """`cfgctl flag eval` of every key on every base context, a few at a
    time (each is a process that connects to etcd): (key, context) -> variant."""
    jobs = [(key, i) for key in keys for i in range(len(BASE_CONTEXTS))]

    def run(job):
        key, i = job
        out = cfgctl("-n", namespace, "flag", "eval", key, "--context", json.dumps(BASE_CONTEXTS[i]))
        return job, json.loads(out)["variant"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, jobs))


def compare(namespace, contexts):
    """Every flag × context: in-process, RPC, OFREP and cfgctl agree."""
    flags = flagd_json(namespace)
    by_cfgctl = cfgctl_variants(namespace, flags.keys())
    inproc = provider(f"inproc-{namespace}", ResolverType.IN_PROCESS, namespace)
    rpc = provider(f"rpc-{namespace}", ResolverType.RPC, namespace)
    compared = 0
    failures = []
    for key, flag in flags.items():
        fallback = default_for(flag.get("variants") or {})
        for i, context in enumerate(contexts):
            status, want = ofrep(namespace, key, context)
            # OFREP leaves the value out when the caller's default applies.
            value = want.get("value", fallback)
            evaluated = by_cfgctl.get((key, i), want.get("variant"))
            if status == 200 and evaluated != want.get("variant"):
                failures.append(f"cfgctl {key} {context}: {evaluated} but OFREP {want}")
            for mode, client in (("in-process", inproc), ("rpc", rpc)):
                got = details(client, key, fallback, context)
                if status != 200:
                    if got.error_code is None:
                        failures.append(f"{mode} {key} {context}: cfgd {want}, provider {got}")
                    continue
                same = (
                    same_value(got.value, value)
                    and got.variant == want.get("variant")
                    and str(getattr(got.reason, "value", got.reason)) == want["reason"]
                )
                if not same:
                    failures.append(
                        f"{mode} {key} {context}: cfgd {want}, provider "
                        f"{dict(value=got.value, variant=got.variant, reason=got.reason, error=got.error_code)}"
                    )
                compared += 1
    print(
        f"  {namespace}: {len(flags)} flags x {len(contexts)} contexts: {compared} provider answers "
        f"and {len(by_cfgctl)} cfgctl answers compared"
    )
    return failures


def main():
    seed_own_flags()
    namespaces = ["prod"] + (["testbed"] if os.environ.get("CFGD_TESTBED") == "1" else [])
    if "testbed" not in namespaces:
        print("  notice: ../shared/conformance/flagd-testbed is absent; testbed skipped")
    for namespace in namespaces:
        cfgctl("ns", "set", namespace, "--fractional", "v3", "--yes")
    failures = compare("prod", CONTEXTS)
    if "testbed" in namespaces:
        failures += compare("testbed", BASE_CONTEXTS)
    api.shutdown()
    if failures:
        print(f"{len(failures)} disagreements; first ones:", *failures[:15], sep="\n")
        sys.exit(1)
    print("  all equal")


main()
