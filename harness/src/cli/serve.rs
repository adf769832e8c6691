//! `palisade serve`: the real `.wasm` as a local HTTP proxy, so a developer
//! can curl through the filter with no Envoy. One VM per worker thread, all
//! sharing one shared-data space, as Envoy's workers do.

use super::{FilterArgs, WasmArgs};
use palisade_harness::forward::{self, Upstream};
use palisade_harness::host::{FilterModule, HttpRequest, SharedSpace, SystemClock, Vm};
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

/// Largest request body accepted.
const MAX_REQUEST_BODY: u64 = 16 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    wasm: WasmArgs,
    /// The upstream to forward allowed requests to (http://host:port).
    #[arg(long)]
    upstream: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:10000")]
    listen: String,
    /// Worker threads (one VM each).
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let upstream = Upstream::parse(&args.upstream)?;
    let config = args.filter.config_bytes()?;
    let module = FilterModule::load(&args.wasm.wasm)?;
    let shared = SharedSpace::new();
    let clock = Arc::new(SystemClock);
    // Start every VM before listening: a bad config fails here, loudly.
    let mut vms = Vec::new();
    for _ in 0..args.workers.max(1) {
        let vm = Vm::start(&module, &config, clock.clone(), shared.clone())
            .map_err(|e| format!("{}: {e}", args.filter.config.display()))?;
        vms.push(vm);
    }
    let server = Arc::new(
        tiny_http::Server::http(&args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?,
    );
    println!(
        "listening on http://{} (filter: {}, upstream: {})",
        server.server_addr(),
        args.wasm.wasm.display(),
        args.upstream
    );
    let mut handles = Vec::new();
    for mut vm in vms {
        let (server, upstream, module, config, clock, shared) = (
            server.clone(),
            upstream.clone(),
            module.clone(),
            config.clone(),
            clock.clone(),
            shared.clone(),
        );
        handles.push(std::thread::spawn(move || loop {
            let Ok(mut request) = server.recv() else {
                continue;
            };
            if vm.is_dead() {
                eprintln!("palisade serve: restarting a VM that trapped");
                if let Ok(fresh) = Vm::start(&module, &config, clock.clone(), shared.clone()) {
                    vm = fresh;
                }
            }
            let reply = serve_one(&mut vm, &mut request, &upstream);
            let _ = request.respond(reply);
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(ExitCode::SUCCESS)
}

fn serve_one(
    vm: &mut Vm,
    request: &mut tiny_http::Request,
    upstream: &Upstream,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut body = Vec::new();
    let _ = request
        .as_reader()
        .take(MAX_REQUEST_BODY)
        .read_to_end(&mut body);
    let headers: Vec<(Vec<u8>, Vec<u8>)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().as_bytes().to_vec(),
                h.value.as_str().as_bytes().to_vec(),
            )
        })
        .collect();
    let authority = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("host"))
        .map(|h| h.value.as_str().to_owned())
        .unwrap_or_default();
    let http = HttpRequest {
        method: request.method().as_str().to_owned(),
        path: request.url().to_owned(),
        authority,
        scheme: "http".into(),
        headers,
        body,
        trailers: Vec::new(),
        peer: request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        principal: None,
        id: None,
    };
    let exchange = vm.handle(&http, &mut |sent| {
        forward::send(
            upstream,
            &http.method,
            &http.path,
            &sent.headers,
            &sent.body,
        )
    });
    for line in &exchange.logs {
        eprintln!("{}", line.message);
    }
    if let Some(trap) = &exchange.trap {
        eprintln!("palisade serve: the filter failed: {trap}");
    }
    let mut response =
        tiny_http::Response::from_data(exchange.body).with_status_code(exchange.status);
    for (k, v) in &exchange.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_slice(), v.as_slice()) {
            response.add_header(h);
        }
    }
    response
}
