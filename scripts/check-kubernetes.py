#!/usr/bin/env python3
"""Checks deploy/kubernetes/ offline (no cluster is reachable in CI):

- every manifest validates against the Kubernetes 1.31 schemas, strictly
  (unknown fields are errors), with kubernetes-validate;
- kustomization.yaml lists exactly the manifests beside it;
- the cfgd image named is the one the Dockerfile says to build
  (`docker build -t cfgd:VERSION`), at the workspace's version;
- each container of that image runs a binary the Dockerfile builds and
  copies (`cfgd`, `cfgd-agent`), on the port the Dockerfile exposes (the
  server) or the agent's settings listen on (the agent), as the uid the
  Dockerfile creates;
- the shape production.md promises: cfgd with 2 replicas or more, probes,
  resource requests, non-root with a read-only root filesystem, selected by
  a PodDisruptionBudget and a Service; a `cfgd-agent run` native sidecar
  (restartPolicy: Always) and a `render --once` init container.

One line per failure; exit 1 if any. `make test` runs it (through
target/pyenv, where install-deps puts kubernetes-validate); the agent's
tests run it on broken copies too.

Usage: check-kubernetes.py [--dir DIR] [--dockerfile FILE] [--cargo FILE]
"""
import argparse
import os
import re
import sys

import yaml
import kubernetes_validate
from kubernetes_validate.utils import (
    InvalidSchemaError,
    SchemaNotFoundError,
    ValidationError,
)

KUBERNETES = "1.31.0"

failures = []


def fail(where, message):
    failures.append(f"check-kubernetes: {where}: {message}")


def dockerfile_facts(path):
    text = open(path).read()
    version = re.search(r"docker build -t cfgd:(\S+?)[` ]", text)
    built = set()
    for line in re.findall(r"cargo build[^\n]*", text):
        built.update(re.findall(r"--bin (\S+)", line))
    copied = set(re.findall(r"COPY --from=build \S+ /usr/local/bin/(\S+)", text))
    exposed = set(int(p) for p in re.findall(r"^EXPOSE (\d+)", text, re.M))
    uid = re.search(r"useradd [^\n]*--uid (\d+)", text)
    return {
        "tag": version.group(1) if version else None,
        "binaries": built & copied,
        "exposed": exposed,
        "uid": int(uid.group(1)) if uid else None,
    }


def workspace_version(path):
    text = open(path).read()
    match = re.search(r"\[workspace\.package\][^\[]*?version = \"([^\"]+)\"", text, re.S)
    return match.group(1) if match else None


def pod_specs(doc):
    kind = doc.get("kind")
    if kind == "Pod":
        return [doc.get("spec", {})]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [doc.get("spec", {}).get("template", {}).get("spec", {})]
    return []


def agent_listen_ports(docs):
    ports = set()
    for doc in docs:
        if doc.get("kind") != "ConfigMap":
            continue
        for name, text in (doc.get("data") or {}).items():
            if name.endswith(".toml") and "[[template]]" in text:
                match = re.search(r'^listen = "[^"]*:(\d+)"', text, re.M)
                if match:
                    ports.add(int(match.group(1)))
    return ports


def check_containers(where, spec, facts, image, agent_ports):
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    for c in containers:
        at = f"{where}: container {c.get('name')}"
        if not str(c.get("image", "")).startswith("cfgd"):
            continue
        if c["image"] != image:
            fail(at, f"image {c['image']}, but the Dockerfile builds {image}")
        command = c.get("command") or []
        binary = command[0] if command else "cfgd"
        if binary not in facts["binaries"]:
            fail(at, f"runs {binary}, which the Dockerfile does not build and copy (it does {sorted(facts['binaries'])})")
        ports = {p.get("containerPort") for p in c.get("ports") or []}
        if binary == "cfgd" and ports and not ports <= facts["exposed"]:
            fail(at, f"port {sorted(ports)}, but the Dockerfile exposes {sorted(facts['exposed'])}")
        if binary == "cfgd-agent" and ports and not ports <= agent_ports:
            fail(at, f"port {sorted(ports)}, but the agent's settings listen on {sorted(agent_ports)}")
        uid = (c.get("securityContext") or {}).get("runAsUser") or (spec.get("securityContext") or {}).get("runAsUser")
        if binary == "cfgd" and uid != facts["uid"]:
            fail(at, f"runs as uid {uid}, but the Dockerfile's cfgd user is {facts['uid']}")


def security(spec, c):
    """The container's effective securityContext fields."""
    pod = spec.get("securityContext") or {}
    own = c.get("securityContext") or {}
    return lambda key: own.get(key, pod.get(key))


def check_shape(docs):
    """What the production guide promises of the manifests' shape."""
    servers, agents, renders = [], [], []
    for name, doc in docs:
        kind = doc.get("kind")
        where = f"{name}: {kind}/{(doc.get('metadata') or {}).get('name')}"
        for spec in pod_specs(doc):
            labels = (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
            for c in (spec.get("initContainers") or []):
                command = c.get("command") or []
                if command[:1] == ["cfgd-agent"] and "run" in command:
                    agents.append(where)
                    if c.get("restartPolicy") != "Always":
                        fail(where, f"init container {c.get('name')} runs cfgd-agent run but is not a native sidecar (restartPolicy: Always)")
                if command[:1] == ["cfgd-agent"] and "render" in command and "--once" in command:
                    renders.append(where)
            for c in spec.get("containers") or []:
                if (c.get("command") or [])[:2] != ["cfgd", "serve"]:
                    continue
                servers.append(where)
                at = f"{where}: container {c.get('name')}"
                get = security(spec, c)
                replicas = (doc.get("spec") or {}).get("replicas", 1)
                # Not a number at all: the schema check says so.
                if isinstance(replicas, int) and replicas < 2:
                    fail(where, "cfgd runs fewer than 2 replicas")
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        fail(at, f"no {probe}")
                if not (c.get("resources") or {}).get("requests"):
                    fail(at, "no resource requests")
                if get("runAsNonRoot") is not True:
                    fail(at, "not runAsNonRoot")
                if get("readOnlyRootFilesystem") is not True:
                    fail(at, "its root filesystem is not read-only")
                covered = lambda selectors: any(sel and all(labels.get(k) == v for k, v in sel.items()) for sel in selectors)
                if not covered(pdbs_of(docs)):
                    fail(where, "no PodDisruptionBudget selects cfgd's pods")
                if not covered([(d.get("spec") or {}).get("selector") or {} for _, d in docs if d.get("kind") == "Service"]):
                    fail(where, "no Service selects cfgd's pods")
    if not servers:
        fail("deploy/kubernetes", "no container runs cfgd serve")
    if not agents:
        fail("deploy/kubernetes", "no cfgd-agent run sidecar")
    if not renders:
        fail("deploy/kubernetes", "no init container runs cfgd-agent render --once")


def pdbs_of(docs):
    return [((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {} for _, d in docs if d.get("kind") == "PodDisruptionBudget"]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=os.path.join(root, "deploy", "kubernetes"))
    parser.add_argument("--dockerfile", default=os.path.join(root, "Dockerfile"))
    parser.add_argument("--cargo", default=os.path.join(root, "Cargo.toml"))
    args = parser.parse_args()

    facts = dockerfile_facts(args.dockerfile)
    version = workspace_version(args.cargo)
    if facts["tag"] != version:
        fail(args.dockerfile, f"says to build cfgd:{facts['tag']}, but the workspace is at version {version}")
    image = f"cfgd:{version}"

    manifests = sorted(f for f in os.listdir(args.dir) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    kustomization = os.path.join(args.dir, "kustomization.yaml")
    if not os.path.exists(kustomization):
        fail(args.dir, "no kustomization.yaml")
    else:
        listed = (yaml.safe_load(open(kustomization)) or {}).get("resources") or []
        for name in sorted(set(listed) - set(manifests)):
            fail("kustomization.yaml", f"lists {name}, which is not there")
        for name in sorted(set(manifests) - set(listed)):
            fail("kustomization.yaml", f"does not list {name}")

    docs = []
    for name in manifests:
        try:
            found = [d for d in yaml.safe_load_all(open(os.path.join(args.dir, name))) if d]
        except yaml.YAMLError as e:
            fail(name, f"not YAML: {' '.join(str(e).split())}")
            continue
        docs.extend((name, d) for d in found)
    agent_ports = agent_listen_ports([d for _, d in docs])
    for name, doc in docs:
        where = f"{name}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(where, f"{path}: {e.message} (Kubernetes {KUBERNETES}, strict)")
        except (SchemaNotFoundError, InvalidSchemaError) as e:
            fail(where, f"{e.message}")
        except (KeyError, TypeError) as e:
            fail(where, f"not a Kubernetes object ({e})")
        for spec in pod_specs(doc):
            check_containers(where, spec, facts, image, agent_ports)
    check_shape(docs)

    for line in failures:
        print(line, file=sys.stderr)
    if not failures:
        print(f"check-kubernetes: {len(docs)} objects in {len(manifests)} files valid against Kubernetes {KUBERNETES} (strict)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
