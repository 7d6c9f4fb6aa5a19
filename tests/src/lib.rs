//! Shared helpers for Wafer's integration tests (`tests/tests/all`).

/// Paths of the Wasm guests built by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    fn built(path: Option<&'static str>, what: &str, fix: &str) -> &'static str {
        path.unwrap_or_else(|| panic!("{what} was not built: {fix} was not found when the tests were built; run scripts/test.sh (it installs it)"))
    }

    /// The Python card-transaction component; panics with a fix-it message if it wasn't built.
    pub fn python_card_txn() -> &'static str {
        built(PYTHON_CARD_TXN, "the Python card_txn guest", "componentize-py")
    }

    /// The JavaScript examples, built with QuickJS (componentize-qjs).
    pub fn js_qjs_card_txn() -> &'static str {
        built(JS_QJS_CARD_TXN, "the JavaScript (QuickJS) card_txn guest", "componentize-qjs")
    }
    pub fn js_qjs_txn_risk() -> &'static str {
        built(JS_QJS_TXN_RISK, "the JavaScript (QuickJS) txn_risk guest", "componentize-qjs")
    }

    /// The same JavaScript sources, built with StarlingMonkey (componentize-js).
    pub fn js_sm_card_txn() -> &'static str {
        built(JS_SM_CARD_TXN, "the JavaScript (StarlingMonkey) card_txn guest", "componentize-js")
    }
    pub fn js_sm_txn_risk() -> &'static str {
        built(JS_SM_TXN_RISK, "the JavaScript (StarlingMonkey) txn_risk guest", "componentize-js")
    }

    /// The C examples (clang + wasi-libc).
    pub fn c_card_txn() -> &'static str {
        built(C_CARD_TXN, "the C card_txn guest", "clang for wasm32-wasi")
    }
    pub fn c_txn_risk() -> &'static str {
        built(C_TXN_RISK, "the C txn_risk guest", "clang for wasm32-wasi")
    }
}
