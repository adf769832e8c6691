//! Runs a WASI (preview 1) command module on the harness's wasmtime, with
//! the current directory preopened read-write: a cargo runner, so the
//! decision core's benchmarks run compiled to `wasm32-wasip1`, on the same
//! engine and settings the harness runs the filter with. A debug build
//! is enough: the measured code is the module's, compiled by Cranelift
//! (which the dev profile optimises, see the workspace Cargo.toml).
//!
//! ```text
//! CARGO_TARGET_WASM32_WASIP1_RUNNER=target/debug/palisade-wasi-run \
//!   cargo bench -p palisade-core --bench decision --target wasm32-wasip1
//! ```

use std::process::ExitCode;
use wasmtime::{Config, Engine, Linker, Module, OptLevel, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(message) => {
            eprintln!("palisade-wasi-run: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<i32, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: palisade-wasi-run MODULE.wasm [ARGS...]".into());
    };
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::Speed);
    let engine = Engine::new(&config).map_err(|e| format!("wasmtime: {e}"))?;
    let module = Module::from_file(&engine, path).map_err(|e| format!("{path}: {e}"))?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |ctx| ctx).map_err(|e| format!("linking WASI: {e}"))?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().inherit_env().args(&args);
    wasi.preopened_dir(".", ".", FsPerms::ReadWrite)
        .map_err(|e| format!("preopening .: {e}"))?;
    let mut store = Store::new(&engine, wasi.build_p1());
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(|e| format!("instantiating {path}: {e}"))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| format!("{path} is not a command module: {e}"))?;
    match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(format!("{path} trapped: {e:?}")),
        },
    }
}
