//! Differential test: cfgd's flag evaluator against OpenFeature's reference
//! evaluator, `@openfeature/flagd-core`, run under Node
//! (`tests/differential/evaluate.mjs`; `make test` installs Node and the
//! package). Thousands of generated contexts over every operator, including
//! nested rules, missing attributes and wrong types; every evaluation must
//! agree on value, variant, reason and error code.

use std::io::Write;
use std::process::{Command, Stdio};

use cfgd::flags::{Details, FlagSet, FlagValue};
use serde_json::{json, Map, Value};

/// The flags: one or more per operator, plus the shapes flagd treats
/// specially (disabled, no default variant, targeting that names no variant).
fn document() -> Value {
    let bool_flag = |targeting: Value| {
        json!({"state": "ENABLED", "variants": {"on": true, "off": false},
               "defaultVariant": "off", "targeting": targeting})
    };
    let color_flag = |targeting: Value| {
        json!({"state": "ENABLED",
               "variants": {"red": "red", "green": "green", "blue": "blue"},
               "defaultVariant": "blue", "targeting": targeting})
    };
    let pick = |condition: Value| json!({"if": [condition, "on", "off"]});
    json!({
        "$evaluators": {
            "is_staff": {"ends_with": [{"var": "email"}, "@example.com"]},
            "adult": {">=": [{"var": "age"}, 18]}
        },
        "flags": {
            "static-bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "static-number": {"state": "ENABLED", "variants": {"one": 1, "half": 2.5}, "defaultVariant": "half"},
            "static-object": {"state": "ENABLED", "variants": {"a": {"x": 1}, "b": {"y": [1, 2]}}, "defaultVariant": "b"},
            "disabled": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "no-default": {"state": "ENABLED", "variants": {"on": true, "off": false},
                           "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "on", null]}},
            "eq": bool_flag(pick(json!({"==": [{"var": "age"}, 30]}))),
            "strict-eq": bool_flag(pick(json!({"===": [{"var": "age"}, 30]}))),
            "ne": bool_flag(pick(json!({"!=": [{"var": "tier"}, "gold"]}))),
            "strict-ne": bool_flag(pick(json!({"!==": [{"var": "tier"}, "gold"]}))),
            "lt": bool_flag(pick(json!({"<": [{"var": "age"}, 21]}))),
            "le": bool_flag(pick(json!({"<=": [{"var": "age"}, 21]}))),
            "gt": bool_flag(pick(json!({">": [{"var": "age"}, 65]}))),
            "ge": bool_flag(pick(json!({">=": [{"var": "age"}, 65]}))),
            "between": bool_flag(pick(json!({"<": [18, {"var": "age"}, 65]}))),
            "between-incl": bool_flag(pick(json!({"<=": [18, {"var": "age"}, 65]}))),
            "in-list": bool_flag(pick(json!({"in": [{"var": "country"}, ["de", "fr", "it"]]}))),
            "in-string": bool_flag(pick(json!({"in": ["@", {"var": "email"}]}))),
            // The clock is read only for rules that can read it: each of
            // these must see a real time (after November 2023).
            "timestamp": bool_flag(pick(json!({">": [{"var": "$flagd.timestamp"}, 1_700_000_000]}))),
            "timestamp-default": bool_flag(pick(json!({">": [{"var": ["$flagd.timestamp", 0]}, 1_700_000_000]}))),
            "timestamp-computed": bool_flag(pick(json!({">": [{"var": {"cat": ["$flagd.", "timestamp"]}}, 1_700_000_000]}))),
            "in-literal-string": bool_flag(pick(json!({"in": [{"var": "country"}, "de fr it"]}))),
            "in-literal-rules": bool_flag(pick(json!({"in": [{"var": "tier"}, [{"var": "tier"}, "x"]]}))),
            "and": bool_flag(pick(json!({"and": [{"var": "beta"}, {">": [{"var": "age"}, 20]}]}))),
            "or": bool_flag(pick(json!({"or": [{"var": "beta"}, {"==": [{"var": "tier"}, "gold"]}]}))),
            "not": bool_flag(pick(json!({"!": [{"var": "beta"}]}))),
            "truthy": bool_flag(pick(json!({"!!": [{"var": "tags"}]}))),
            "var-default": color_flag(json!({"var": ["color", "green"]})),
            "var-nested": color_flag(json!({"if": [{"==": [{"var": "user.name"}, "ann"]}, "red", null]})),
            "missing": bool_flag(pick(json!({"missing": ["email", "age"]}))),
            "missing-some": bool_flag(pick(json!({"missing_some": [1, ["email", "tier"]]}))),
            "cat": color_flag(json!({"cat": [{"var": "color"}, ""]})),
            "substr": color_flag(json!({"substr": [{"var": "color"}, 0, 3]})),
            "arith": bool_flag(pick(json!({">": [{"+": [{"var": "age"}, {"*": [2, 3]}, {"-": [10, 4]}]}, 40]}))),
            "div-mod": bool_flag(pick(json!({"==": [{"%": [{"/": [{"var": "age"}, 1]}, 2]}, 0]}))),
            "min-max": bool_flag(pick(json!({"<": [{"min": [{"var": "age"}, 50]}, {"max": [30, 10]}]}))),
            "merge": bool_flag(pick(json!({"in": ["x", {"merge": [{"var": "tags"}, ["y"]]}]}))),
            "map": bool_flag(pick(json!({"in": ["X", {"map": [{"var": "tags"}, {"cat": [{"var": ""}, ""]}]}]}))),
            "filter": bool_flag(pick(json!({"some": [{"filter": [{"var": "tags"}, {"==": [{"var": ""}, "x"]}]}, {"==": [{"var": ""}, "x"]}]}))),
            "reduce": bool_flag(pick(json!({">": [{"reduce": [{"var": "scores"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, 10]}))),
            "all": bool_flag(pick(json!({"all": [{"var": "scores"}, {">": [{"var": ""}, 2]}]}))),
            "none": bool_flag(pick(json!({"none": [{"var": "scores"}, {">": [{"var": ""}, 8]}]}))),
            "some-literal": bool_flag(pick(json!({"some": [[1, {"var": "age"}], {">": [{"var": ""}, 40]}]}))),
            "starts-with": bool_flag(pick(json!({"starts_with": [{"var": "email"}, "admin"]}))),
            "ends-with": bool_flag(pick(json!({"ends_with": [{"var": "email"}, ".io"]}))),
            "semver-eq": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, "=", "1.2.3"]}))),
            "semver-ne": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, "!=", "1.2.3"]}))),
            "semver-lt": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, "<", "2.0.0"]}))),
            "semver-le": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, "<=", "2.0.0"]}))),
            "semver-gt": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, ">", "1.0.0"]}))),
            "semver-ge": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, ">=", "1.0.0"]}))),
            "semver-caret": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, "^", "1.0.0"]}))),
            "semver-tilde": bool_flag(pick(json!({"sem_ver": [{"var": "version"}, "~", "1.2.0"]}))),
            "fractional-implicit": color_flag(json!({"fractional": [["red", 25], ["green", 25], ["blue", 50]]})),
            "fractional-explicit": color_flag(json!({"fractional": [{"var": "user.name"}, ["red", 1], ["green", 1]]})),
            "fractional-keyed": color_flag(json!({"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["red", 60], ["blue", 40]]})),
            "fractional-nested": color_flag(json!({"if": [{"var": "beta"}, {"fractional": [["red", 50], ["green", 50]]}, "blue"]})),
            "ref": bool_flag(pick(json!({"and": [{"$ref": "is_staff"}, {"$ref": "adult"}]}))),
            "nested-if": color_flag(json!({"if": [
                {"==": [{"var": "tier"}, "gold"]}, "red",
                {"and": [{"var": "beta"}, {"in": [{"var": "country"}, ["de", "fr"]]}]}, "green",
                {"<": [{"var": "age"}, 18]}, "blue",
                null]})),
            "bool-result": {"state": "ENABLED", "variants": {"true": "yes", "false": "no"}, "defaultVariant": "false",
                            "targeting": {">": [{"var": "age"}, 40]}},
            "unknown-variant": color_flag(json!({"if": [{"var": "beta"}, "purple", "red"]})),
            "number-result": color_flag(json!({"if": [{"var": "beta"}, 7, "red"]})),
            "string-ops-wrong-type": bool_flag(pick(json!({"starts_with": [{"var": "age"}, "1"]}))),
            "flag-key": color_flag(json!({"if": [{"==": [{"var": "$flagd.flagKey"}, "flag-key"]}, "green", "red"]}))
        }
    })
}

/// A small deterministic generator (xorshift), so every run checks the
/// same contexts and a failure can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, options: &'a [Value]) -> &'a Value {
        &options[(self.next() % options.len() as u64) as usize]
    }
}

/// `null` in an option list means "leave the attribute out".
fn contexts(count: usize) -> Vec<Value> {
    let emails = [
        json!("ann@example.com"),
        json!("admin@corp.io"),
        json!("bob@corp.io"),
        json!("noatsign"),
        json!(""),
        json!(42),
        json!(true),
        json!(null),
        json!("ADMIN@example.com"),
    ];
    let ages = [
        json!(17),
        json!(18),
        json!(21),
        json!(30),
        json!(30.0),
        json!(40),
        json!(65),
        json!(70),
        json!("30"),
        json!("abc"),
        json!(true),
        json!(null),
        json!(-1),
        json!(20.5),
    ];
    let tiers = [
        json!("gold"),
        json!("silver"),
        json!(""),
        json!(1),
        json!(null),
    ];
    let countries = [
        json!("de"),
        json!("fr"),
        json!("us"),
        json!("DE"),
        json!(7),
        json!(null),
    ];
    let versions = [
        json!("1.2.3"),
        json!("1.2.4"),
        json!("2.0.0"),
        json!("2.0.0-beta.1"),
        json!("v1.2.3"),
        json!("1.2"),
        json!("1"),
        json!(1),
        json!(1.2),
        json!("1.2.3+build.7"),
        json!("not-a-version"),
        json!("0.9.9"),
        json!(null),
        json!(true),
    ];
    let tags = [
        json!(["x", "y"]),
        json!([]),
        json!(["X"]),
        json!("x"),
        json!(null),
        json!([1, 2]),
    ];
    let scores = [
        json!([1, 2, 3]),
        json!([5, 6, 9]),
        json!([]),
        json!([3, 4]),
        json!(null),
        json!("123"),
    ];
    let colors = [
        json!("red"),
        json!("green"),
        json!("blueberry"),
        json!("purple"),
        json!(null),
        json!(3),
    ];
    let names = [json!("ann"), json!("bob"), json!(""), json!(null), json!(5)];
    let betas = [
        json!(true),
        json!(false),
        json!(null),
        json!(1),
        json!(0),
        json!("yes"),
        json!(""),
    ];
    let keys = [
        json!("user-1"),
        json!("user-2"),
        json!(""),
        json!(null),
        json!("käse"),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..count)
        .map(|i| {
            let mut ctx = Map::new();
            let mut set = |name: &str, value: &Value| {
                if !value.is_null() {
                    ctx.insert(name.into(), value.clone());
                }
            };
            set("email", rng.pick(&emails));
            set("age", rng.pick(&ages));
            set("tier", rng.pick(&tiers));
            set("country", rng.pick(&countries));
            set("version", rng.pick(&versions));
            set("tags", rng.pick(&tags));
            set("scores", rng.pick(&scores));
            set("color", rng.pick(&colors));
            set("beta", rng.pick(&betas));
            // Many distinct targeting keys, for the fractional flags.
            match rng.pick(&keys).as_str() {
                Some("user-1") => set("targetingKey", &json!(format!("user-{i}"))),
                _ => set("targetingKey", rng.pick(&keys)),
            }
            let name = rng.pick(&names).clone();
            if !name.is_null() {
                ctx.insert("user".into(), json!({ "name": name }));
            }
            Value::Object(ctx)
        })
        .collect()
}

/// The OpenFeature type a flag is asked for (flagd-core has one number type).
fn natural_type(flag: &Value) -> &'static str {
    match flag["variants"].as_object().and_then(|v| v.values().next()) {
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        _ => "object",
    }
}

fn default_for(kind: &str) -> Value {
    match kind {
        "boolean" => json!(false),
        "number" => json!(-1),
        "string" => json!("fallback"),
        _ => json!({"fallback": true}),
    }
}

fn ours<T: FlagValue + Into<Value>>(set: &FlagSet, key: &str, default: T, ctx: &Value) -> Value {
    let d: Details<T> = set.evaluate(key, default, ctx);
    json!({
        "value": d.value.into(),
        "variant": d.variant,
        "reason": d.reason.as_str(),
        "errorCode": d.error_code.map(|c| c.as_str()),
    })
}

fn reference(document: &str, cases: &[Value]) -> Vec<Value> {
    let dir = crate::common::root().join("tests/differential");
    assert!(
        dir.join("node_modules/@openfeature/flagd-core").is_dir(),
        "flagd-core is not installed in {}: run `make test` (it installs Node and runs `npm ci` there)",
        dir.display()
    );
    let mut node = Command::new("node")
        .arg("evaluate.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `node` (installed by `make test`)");
    let input = json!({"document": document, "cases": cases}).to_string();
    let mut stdin = node.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = node.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let printed = crate::common::stdout_of("node evaluate.mjs", out);
    serde_json::from_str(&printed).expect("node printed JSON")
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

#[test]
fn agrees_with_flagd_core_on_every_case() {
    let document = document();
    let text = document.to_string();
    let set = FlagSet::from_document(&text).unwrap();
    let flags = document["flags"].as_object().unwrap();
    let mut cases = Vec::new();
    for (i, ctx) in contexts(300).into_iter().enumerate() {
        for (key, flag) in flags {
            let natural = natural_type(flag);
            cases.push(json!({"key": key, "type": natural, "default": default_for(natural), "context": ctx}));
            // Now and then, the wrong type, and a flag that does not exist.
            if i % 17 == 0 {
                let wrong = if natural == "string" {
                    "number"
                } else {
                    "string"
                };
                cases.push(json!({"key": key, "type": wrong, "default": default_for(wrong), "context": ctx}));
            }
        }
        if i % 29 == 0 {
            cases.push(
                json!({"key": "no-such-flag", "type": "boolean", "default": false, "context": ctx}),
            );
        }
    }
    let theirs = reference(&text, &cases);
    assert_eq!(theirs.len(), cases.len());

    let mut disagreements = Vec::new();
    for (case, expected) in cases.iter().zip(&theirs) {
        let key = case["key"].as_str().unwrap();
        let ctx = &case["context"];
        let got = match case["type"].as_str().unwrap() {
            "boolean" => ours(&set, key, case["default"].as_bool().unwrap(), ctx),
            "string" => ours(&set, key, case["default"].as_str().unwrap().to_owned(), ctx),
            "number" => ours(&set, key, case["default"].as_f64().unwrap(), ctx),
            _ => ours(&set, key, case["default"].clone(), ctx),
        };
        if !same(&got, expected) {
            disagreements.push(format!(
                "{case}\n  cfgd:       {got}\n  flagd-core: {expected}"
            ));
        }
    }
    println!("{} evaluations compared with flagd-core", cases.len());
    // For working through a failure: every disagreement, one per paragraph.
    if let Some(path) = std::env::var_os("CFGD_DIFF_DUMP") {
        std::fs::write(path, disagreements.join("\n")).unwrap();
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} evaluations disagree; first ones:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
