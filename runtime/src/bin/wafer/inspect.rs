//! `wafer inspect`: what a component is.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::SandboxArgs;

#[derive(Args)]
pub struct InspectArgs {
    /// The component (.wasm).
    component: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let loader = args.sandbox.loader()?;
    let t = crate::progress::load_transform(&loader, &args.component, args.sandbox.limits())
        .with_context(|| format!("{} is not a usable Wafer transform", args.component.display()))?;
    let info = t.info();
    let stats = t.load_stats();
    let spec =
        |s: &wafer_runtime::FeatureSpec| json!({"name": s.name, "type": s.value_type.as_str(), "nullable": s.nullable});
    if args.json {
        let j = json!({
            "world": t.kind().world_name(),
            "name": info.name,
            "version": info.version,
            "outputs": info.outputs.iter().map(spec).collect::<Vec<_>>(),
            "params": info.params.iter().map(spec).collect::<Vec<_>>(),
            "reads": info.reads,
            "imports": stats.imports,
            "sha256": stats.sha256,
            "wasm_bytes": stats.wasm_bytes,
            "compile_ms": stats.compile.as_secs_f64() * 1e3,
            "from_cache": stats.from_cache,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("world:    {}", t.kind().world_name());
    println!("name:     {}", info.name);
    println!("version:  {}", info.version);
    println!("sha256:   {}", stats.sha256);
    println!(
        "size:     {} bytes (compiled in {:.1} ms{})",
        stats.wasm_bytes,
        stats.compile.as_secs_f64() * 1e3,
        if stats.from_cache { ", from cache" } else { "" }
    );
    println!("outputs:");
    for s in &info.outputs {
        println!("  {:<24} {}{}", s.name, s.value_type.as_str(), if s.nullable { " (nullable)" } else { "" });
    }
    if !info.params.is_empty() {
        println!("request params:");
        for s in &info.params {
            println!("  {:<24} {}{}", s.name, s.value_type.as_str(), if s.nullable { " (nullable)" } else { "" });
        }
    }
    if !info.reads.is_empty() {
        println!("reads stored features:");
        for r in &info.reads {
            println!("  {r}");
        }
    }
    println!("imports:");
    for i in &stats.imports {
        println!("  {i}");
    }
    Ok(ExitCode::SUCCESS)
}
