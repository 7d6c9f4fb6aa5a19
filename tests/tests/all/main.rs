//! Wafer's integration tests: one binary, one module per area (as in wasmtime's `tests/all`).
//! Guests are built once per test build by `tests/build.rs`.

mod aggregate;
mod cli;
mod cluster;
mod exactness;
mod examples;
mod faults;
mod feast_sdk;
mod hardening;
mod languages;
mod offline;
mod sandbox;
mod scaffold;
mod schema;
mod serving;
mod streaming;
mod support;
mod tenants;
mod upload;
