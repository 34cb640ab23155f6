//! cfgd-agent end to end: real etcd, the real cfgd server and cfgctl, the
//! agent as a process, and real child programs (`child.py`).

#[path = "../../../tests/common/mod.rs"]
mod common;

mod faults;
mod files;
mod kubernetes;
mod modes;
mod policies;
mod support;
