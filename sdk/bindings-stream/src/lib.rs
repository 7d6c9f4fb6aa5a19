//! Guest bindings for the `stream-transform` world, generated from `wit/transform.wit`.
//! (A separate crate because wit-bindgen's exported helper macros are named per interface, and
//! both worlds export `describe`.)
wit_bindgen::generate!({
    path: "../../wit",
    world: "stream-transform",
    pub_export_macro: true,
    export_macro_name: "export_stream_world",
    default_bindings_module: "wafer_sdk::bindings::stream",
});
