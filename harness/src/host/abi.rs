//! The proxy-wasm 0.2.1 host functions, linked into the `env` module.
//!
//! Each function checks every guest pointer (see [`super::memory`]) and
//! returns a proxy-wasm status. Imports the filter never makes are linked as
//! traps that name the missing function, so a gap fails loudly.

use super::memory::{give, read, read_string, write_u32, write_u64};
use super::state::{HeaderPairs, HostState, HttpCall, LocalReply, LogLine, SetResult};
use palisade_filter::header_map;
use wasmtime::{Caller, Linker, Result};

pub const OK: u32 = 0;
pub const NOT_FOUND: u32 = 1;
pub const BAD_ARGUMENT: u32 = 2;
pub const SERIALIZATION_FAILURE: u32 = 3;
pub const PARSE_FAILURE: u32 = 4;
pub const CAS_MISMATCH: u32 = 8;

type C<'a> = Caller<'a, HostState>;

fn header_map_mut(state: &mut HostState, map_type: u32) -> Option<&mut HeaderPairs> {
    let s = &mut state.stream;
    match map_type {
        0 => Some(&mut s.request_headers),
        1 => Some(&mut s.request_trailers),
        2 => Some(&mut s.response_headers),
        3 => Some(&mut s.response_trailers),
        6 => state.call_response.as_mut().map(|(h, _, _)| h),
        7 => state.call_response.as_mut().map(|(_, _, t)| t),
        _ => None,
    }
}

fn buffer(state: &mut HostState, buffer_type: u32) -> Option<&mut Vec<u8>> {
    match buffer_type {
        0 => Some(&mut state.stream.request_body),
        1 => Some(&mut state.stream.response_body),
        4 => state.call_response.as_mut().map(|(_, b, _)| b),
        6 => Some(&mut state.vm_config),
        7 => Some(&mut state.plugin_config),
        _ => None,
    }
}

fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Links every proxy-wasm host function the filter can call.
pub fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C, level: u32, ptr: u32, len: u32| -> Result<u32> {
            let message = read_string(&mut c, ptr, len)?;
            if level >= c.data().log_level {
                c.data_mut().logs.push(LogLine { level, message });
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C, ret: u32| -> Result<u32> {
            let level = c.data().log_level;
            write_u32(&mut c, ret, level)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C, ret: u32| -> Result<u32> {
            let now = u64::try_from(c.data().clock.now().as_nanos()).unwrap_or(u64::MAX);
            write_u64(&mut c, ret, now)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C, period: u32| -> Result<u32> {
            c.data_mut().tick_period_ms = period;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C, ctx: u32| -> Result<u32> {
            c.data_mut().effective_context = ctx;
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_c: C| -> Result<u32> { Ok(OK) })?;
    for name in ["proxy_continue_stream", "proxy_close_stream"] {
        linker.func_wrap("env", name, |_c: C, _stream: u32| -> Result<u32> { Ok(OK) })?;
    }
    for name in ["proxy_continue_request", "proxy_continue_response"] {
        linker.func_wrap("env", name, |_c: C| -> Result<u32> { Ok(OK) })?;
    }

    // Buffers: bodies, call response body, VM and plugin configuration.
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C,
         buffer_type: u32,
         start: u32,
         max: u32,
         ret_ptr: u32,
         ret_len: u32|
         -> Result<u32> {
            let Some(buf) = buffer(c.data_mut(), buffer_type) else {
                return Ok(BAD_ARGUMENT);
            };
            let start = (start as usize).min(buf.len());
            let end = start.saturating_add(max as usize).min(buf.len());
            let bytes = buf.get(start..end).unwrap_or_default().to_vec();
            give(&mut c, &bytes, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C, buffer_type: u32, ret_len: u32, ret_flags: u32| -> Result<u32> {
            let Some(len) = buffer(c.data_mut(), buffer_type).map(|b| b.len()) else {
                return Ok(BAD_ARGUMENT);
            };
            write_u32(&mut c, ret_len, u32::try_from(len).unwrap_or(u32::MAX))?;
            write_u32(&mut c, ret_flags, 0)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C, buffer_type: u32, start: u32, size: u32, ptr: u32, len: u32| -> Result<u32> {
            let data = read(&mut c, ptr, len)?;
            let Some(buf) = buffer(c.data_mut(), buffer_type) else {
                return Ok(BAD_ARGUMENT);
            };
            let start = (start as usize).min(buf.len());
            let end = start.saturating_add(size as usize).min(buf.len());
            buf.splice(start..end, data);
            Ok(OK)
        },
    )?;

    // Header maps.
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C, map_type: u32, ret_ptr: u32, ret_len: u32| -> Result<u32> {
            let Some(map) = header_map_mut(c.data_mut(), map_type) else {
                return Ok(BAD_ARGUMENT);
            };
            let bytes = header_map::encode(map);
            give(&mut c, &bytes, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C, map_type: u32, ptr: u32, len: u32| -> Result<u32> {
            let bytes = read(&mut c, ptr, len)?;
            let Some(pairs) = header_map::decode(&bytes) else {
                return Ok(SERIALIZATION_FAILURE);
            };
            let Some(map) = header_map_mut(c.data_mut(), map_type) else {
                return Ok(BAD_ARGUMENT);
            };
            *map = pairs;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C, map_type: u32, ret: u32| -> Result<u32> {
            let Some(map) = header_map_mut(c.data_mut(), map_type) else {
                return Ok(BAD_ARGUMENT);
            };
            let size = header_map::encode(map).len();
            write_u32(&mut c, ret, u32::try_from(size).unwrap_or(u32::MAX))?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C, map_type: u32, kp: u32, kl: u32, ret_ptr: u32, ret_len: u32| -> Result<u32> {
            let key = read(&mut c, kp, kl)?;
            let Some(map) = header_map_mut(c.data_mut(), map_type) else {
                return Ok(BAD_ARGUMENT);
            };
            let Some(value) = map
                .iter()
                .find(|(k, _)| same_name(k, &key))
                .map(|(_, v)| v.clone())
            else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &value, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C, map_type: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> Result<u32> {
            let (key, value) = (read(&mut c, kp, kl)?, read(&mut c, vp, vl)?);
            let Some(map) = header_map_mut(c.data_mut(), map_type) else {
                return Ok(BAD_ARGUMENT);
            };
            map.push((key.to_ascii_lowercase(), value));
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C, map_type: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> Result<u32> {
            let (key, value) = (read(&mut c, kp, kl)?, read(&mut c, vp, vl)?);
            let Some(map) = header_map_mut(c.data_mut(), map_type) else {
                return Ok(BAD_ARGUMENT);
            };
            map.retain(|(k, _)| !same_name(k, &key));
            map.push((key.to_ascii_lowercase(), value));
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C, map_type: u32, kp: u32, kl: u32| -> Result<u32> {
            let key = read(&mut c, kp, kl)?;
            let Some(map) = header_map_mut(c.data_mut(), map_type) else {
                return Ok(BAD_ARGUMENT);
            };
            map.retain(|(k, _)| !same_name(k, &key));
            Ok(OK)
        },
    )?;

    // Properties: the path arrives as NUL-separated segments.
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C, pp: u32, pl: u32, ret_ptr: u32, ret_len: u32| -> Result<u32> {
            let path = read(&mut c, pp, pl)?;
            let key: Vec<String> = path
                .split(|b| *b == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            let Some(value) = c.data().stream.properties.get(&key.join(".")).cloned() else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &value, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C,
         status: u32,
         dp: u32,
         dl: u32,
         bp: u32,
         bl: u32,
         hp: u32,
         hl: u32,
         _grpc: i32|
         -> Result<u32> {
            let details = read_string(&mut c, dp, dl)?;
            let body = read(&mut c, bp, bl)?;
            let raw = read(&mut c, hp, hl)?;
            let Some(headers) = header_map::decode(&raw) else {
                return Ok(SERIALIZATION_FAILURE);
            };
            let Ok(status) = u16::try_from(status) else {
                return Ok(BAD_ARGUMENT);
            };
            c.data_mut().stream.local_reply = Some(LocalReply {
                status,
                headers,
                body,
                details,
            });
            Ok(OK)
        },
    )?;

    // Shared data, with compare-and-swap.
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C, kp: u32, kl: u32, ret_ptr: u32, ret_len: u32, ret_cas: u32| -> Result<u32> {
            let key = read_string(&mut c, kp, kl)?;
            let Some((value, cas)) = c.data().shared.get(&key) else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &value, ret_ptr, ret_len)?;
            write_u32(&mut c, ret_cas, cas)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C, kp: u32, kl: u32, vp: u32, vl: u32, cas: u32| -> Result<u32> {
            let key = read_string(&mut c, kp, kl)?;
            let value = read(&mut c, vp, vl)?;
            Ok(match c.data().shared.set(&key, value, cas) {
                SetResult::Ok => OK,
                SetResult::CasMismatch => CAS_MISMATCH,
            })
        },
    )?;

    // Metrics.
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C, kind: u32, np: u32, nl: u32, ret: u32| -> Result<u32> {
            let name = read_string(&mut c, np, nl)?;
            let id = c.data().shared.define_metric(kind, &name);
            write_u32(&mut c, ret, id)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C, id: u32, offset: i64| -> Result<u32> {
            let found = c
                .data()
                .shared
                .update_metric(id, |m| m.value = m.value.saturating_add(offset));
            Ok(if found { OK } else { NOT_FOUND })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C, id: u32, value: u64| -> Result<u32> {
            let v = i64::try_from(value).unwrap_or(i64::MAX);
            let found = c.data().shared.update_metric(id, |m| m.value = v);
            Ok(if found { OK } else { NOT_FOUND })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C, id: u32, ret: u32| -> Result<u32> {
            let Some(metric) = c.data().shared.metric(id) else {
                return Ok(NOT_FOUND);
            };
            write_u64(&mut c, ret, u64::try_from(metric.value).unwrap_or(0))?;
            Ok(OK)
        },
    )?;

    // Outgoing HTTP calls are recorded; the host delivers responses later.
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C,
         up: u32,
         ul: u32,
         hp: u32,
         hl: u32,
         bp: u32,
         bl: u32,
         _tp: u32,
         _tl: u32,
         timeout_ms: u32,
         ret_token: u32|
         -> Result<u32> {
            let upstream = read_string(&mut c, up, ul)?;
            let raw = read(&mut c, hp, hl)?;
            let body = read(&mut c, bp, bl)?;
            let Some(headers) = header_map::decode(&raw) else {
                return Ok(SERIALIZATION_FAILURE);
            };
            let token = c.data().next_call_token;
            c.data_mut().next_call_token = token.wrapping_add(1);
            c.data_mut().http_calls.push(HttpCall {
                token,
                upstream,
                headers,
                body,
                timeout_ms,
            });
            write_u32(&mut c, ret_token, token)?;
            Ok(OK)
        },
    )?;

    // The harness has no gRPC clusters (no rate limit service): a gRPC call
    // is refused as Envoy refuses one it cannot start (ParseFailure for a
    // bare unknown cluster name, InternalFailure for a GrpcService naming
    // one; the Rust SDK maps both to an error, and turns BadArgument into a
    // panic), so a fleet-wide limit fails as its `on_failure` says.
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |_c: C,
         _sp: u32,
         _sl: u32,
         _np: u32,
         _nl: u32,
         _mp: u32,
         _ml: u32,
         _ip: u32,
         _il: u32,
         _rp: u32,
         _rl: u32,
         _timeout_ms: u32,
         _ret_token: u32|
         -> Result<u32> { Ok(PARSE_FAILURE) },
    )?;
    Ok(())
}
