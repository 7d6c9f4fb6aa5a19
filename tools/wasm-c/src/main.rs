//! `wasm-c`: build a Wafer transform written in C into a component.
//!
//! ```text
//! wasm-c build --wit wit --world stream-transform -o card_txn.wasm app.c
//! wasm-c bindgen --wit wit --world stream-transform --out-dir gen
//! wasm-c component core.wasm -o card_txn.wasm
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wasm-c", version, about = "Build Wafer transforms written in C (clang + wasi-libc) into components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate bindings, compile with clang and make the component, in one step.
    Build {
        /// The WIT package directory.
        #[arg(long, default_value = "wit")]
        wit: PathBuf,
        /// `stream-transform` or `request-transform`.
        #[arg(long)]
        world: String,
        /// Extra include directories.
        #[arg(short = 'I', long = "include")]
        include: Vec<PathBuf>,
        /// Directory for generated bindings and the core module [default: build].
        #[arg(long, default_value = "build")]
        work_dir: PathBuf,
        /// The component to write.
        #[arg(short, long)]
        output: PathBuf,
        /// C sources of the transform.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Only generate the C bindings (`<world>.c`, `<world>.h`, `<world>_component_type.o`).
    Bindgen {
        #[arg(long, default_value = "wit")]
        wit: PathBuf,
        #[arg(long)]
        world: String,
        #[arg(long, default_value = "gen")]
        out_dir: PathBuf,
    },
    /// Only turn a core module (linked with the bindings' object file) into a component.
    Component {
        core: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Build { wit, world, include, work_dir, output, sources } => {
            std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
            let opts = wasm_c::BuildOptions { wit, world, sources, include, work_dir, output: output.clone() };
            let size = wasm_c::build(&opts).with_context(|| format!("building {}", output.display()))?;
            eprintln!("wrote {} ({size} bytes)", output.display());
        }
        Command::Bindgen { wit, world, out_dir } => {
            let b =
                wasm_c::bindgen(&wit, &world, &out_dir).with_context(|| format!("generating bindings for {world}"))?;
            eprintln!("wrote {}, {}, {}", b.c.display(), b.h.display(), b.object.display());
        }
        Command::Component { core, output } => {
            let bytes = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
            let component =
                wasm_c::componentize(&bytes).with_context(|| format!("componentizing {}", core.display()))?;
            std::fs::write(&output, &component).with_context(|| format!("writing {}", output.display()))?;
            eprintln!("wrote {} ({} bytes)", output.display(), component.len());
        }
    }
    Ok(())
}
