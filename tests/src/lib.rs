//! Shared helpers for Wafer's integration tests (`tests/tests/all`).

/// Paths of the Wasm guests built by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    /// The Python card-transaction component; panics with a fix-it message if it wasn't built.
    pub fn python_card_txn() -> &'static str {
        PYTHON_CARD_TXN.expect("componentize-py was not found when the tests were built; run scripts/test.sh (it installs it)")
    }
}
