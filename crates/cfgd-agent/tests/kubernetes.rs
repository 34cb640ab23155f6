//! deploy/kubernetes/ through scripts/check-kubernetes.py, as `make test`
//! runs it, and broken copies of it, each of which must fail naming what
//! is wrong.

use std::path::Path;
use std::process::Command;

use crate::common;

fn check(dir: &Path, dockerfile: &Path) -> (i32, String) {
    let root = common::root();
    let out = Command::new(common::python())
        .arg(root.join("scripts/check-kubernetes.py"))
        .arg("--dir")
        .arg(dir)
        .arg("--dockerfile")
        .arg(dockerfile)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A copy of the manifests and the Dockerfile, with `file`'s `from` made `to`.
fn broken(file: &str, from: &str, to: &str) -> (tempfile::TempDir, i32, String) {
    let root = common::root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kubernetes");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(root.join("deploy/kubernetes")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let dockerfile = tmp.path().join("Dockerfile");
    std::fs::copy(root.join("Dockerfile"), &dockerfile).unwrap();
    let target = match file {
        "Dockerfile" => dockerfile.clone(),
        name => dir.join(name),
    };
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains(from), "{file} has no {from:?} to break");
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
    let (code, said) = check(&dir, &dockerfile);
    (tmp, code, said)
}

#[test]
fn the_manifests_validate_and_each_broken_copy_fails_naming_what_broke() {
    let root = common::root();
    let (code, said) = check(&root.join("deploy/kubernetes"), &root.join("Dockerfile"));
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("valid against Kubernetes 1.31.0 (strict)"),
        "{said}"
    );
    let cases = [
        (
            "cfgd.yaml",
            "replicas: 2",
            "replicas: two",
            "cfgd.yaml: Deployment/cfgd: spec.replicas: 'two' is not of type 'integer'",
        ),
        (
            "cfgd.yaml",
            "readinessProbe:",
            "readinesProbe:",
            "Additional properties are not allowed ('readinesProbe' was unexpected)",
        ),
        (
            "etcd.yaml",
            "serviceName: etcd",
            "serviceName: 3",
            "spec.serviceName: 3 is not of type 'string'",
        ),
        (
            "example-app.yaml",
            "image: cfgd:0.1.0",
            "image: cfgd:0.0.9",
            "image cfgd:0.0.9, but the Dockerfile builds cfgd:0.1.0",
        ),
        (
            "example-app.yaml",
            "containerPort: 9090",
            "containerPort: 9091",
            "port [9091], but the agent's settings listen on [9090]",
        ),
        (
            "Dockerfile",
            " --bin cfgd-agent",
            "",
            "runs cfgd-agent, which the Dockerfile does not build and copy",
        ),
        (
            "Dockerfile",
            "EXPOSE 8080",
            "EXPOSE 8081",
            "port [8080], but the Dockerfile exposes [8081]",
        ),
        (
            "Dockerfile",
            "--uid 10001",
            "--uid 10002",
            "runs as uid 10001, but the Dockerfile's cfgd user is 10002",
        ),
        (
            "kustomization.yaml",
            "  - etcd.yaml\n",
            "",
            "kustomization.yaml: does not list etcd.yaml",
        ),
        (
            "cfgd.yaml",
            "  replicas: 2",
            "  replicas: 1",
            "cfgd runs fewer than 2 replicas",
        ),
        (
            "cfgd.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "its root filesystem is not read-only",
        ),
        (
            "cfgd.yaml",
            "minAvailable: 1\n  selector:\n    matchLabels: { app.kubernetes.io/name: cfgd }",
            "minAvailable: 1\n  selector:\n    matchLabels: { app.kubernetes.io/name: other }",
            "no PodDisruptionBudget selects cfgd's pods",
        ),
        (
            "example-app.yaml",
            "  restartPolicy: Always\n",
            "  restartPolicy: OnFailure\n",
            "is not a native sidecar",
        ),
    ];
    for (file, from, to, expected) in cases {
        let (_tmp, code, said) = broken(file, from, to);
        assert_eq!(code, 1, "{file} with {to:?} passed:\n{said}");
        assert!(
            said.contains(expected),
            "{file} with {to:?}: expected {expected:?} in:\n{said}"
        );
    }
}
