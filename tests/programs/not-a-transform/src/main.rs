//! A plain WASI command component (exports wasi:cli/run): the wrong world for Wafer.
fn main() {
    println!("I am not a transform");
}
