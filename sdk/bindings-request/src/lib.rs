//! Guest bindings for the `request-transform` world, generated from `wit/transform.wit`; the
//! shared `types` and `host` interfaces come from `wafer-sdk-stream-bindings`.
wit_bindgen::generate!({
    path: "../../wit",
    world: "request-transform",
    pub_export_macro: true,
    export_macro_name: "export_request_world",
    default_bindings_module: "wafer_sdk::bindings::request",
    with: {
        "wafer:transform/types@0.1.0": wafer_sdk_stream_bindings::wafer::transform::types,
        "wafer:transform/host@0.1.0": wafer_sdk_stream_bindings::wafer::transform::host,
    },
});
