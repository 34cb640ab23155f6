//! The table of `cfgd::ErrorKind`'s docs (crates/cfgd/src/error/kinds.md),
//! read so that each front end's tests check their mapping against what the
//! docs state.
#![allow(dead_code)] // each front end checks its own columns

use cfgd::ErrorKind;

/// One kind's row: its exit code, HTTP status and gRPC code, as written.
pub struct Row {
    pub exit: String,
    pub http: String,
    pub grpc: String,
}

/// Every kind with its documented row; fails when a kind has no row.
pub fn documented() -> Vec<(ErrorKind, Row)> {
    let table = include_str!("../../crates/cfgd/src/error/kinds.md");
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.starts_with("| [`"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    ErrorKind::ALL
        .iter()
        .map(|kind| {
            let name = format!("[`{kind:?}`](Self::{kind:?})");
            let row = rows
                .iter()
                .find(|r| r[0] == name)
                .unwrap_or_else(|| panic!("{kind:?} has no row in kinds.md"));
            let cell = |i: usize| row[i].clone();
            (
                *kind,
                Row {
                    exit: cell(1),
                    http: cell(2),
                    grpc: cell(3),
                },
            )
        })
        .collect()
}
