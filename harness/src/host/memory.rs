//! Bounds-checked access to guest memory from host functions.
//!
//! Every pointer and length the guest passes is checked against the memory's
//! current size; a bad one is a trap naming the call, never a host panic.

use wasmtime::{bail, format_err, Caller, Extern, Memory, Result};

fn memory<T>(caller: &mut Caller<'_, T>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => bail!("the guest exports no memory"),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub fn read<T>(caller: &mut Caller<'_, T>, ptr: u32, len: u32) -> Result<Vec<u8>> {
    let mem = memory(caller)?;
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or_else(|| format_err!("guest range {ptr}+{len} overflows"))?;
    mem.data(&*caller)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format_err!("guest range {ptr}+{len} is outside memory"))
}

/// Reads a guest string (lossily, for names and log lines).
pub fn read_string<T>(caller: &mut Caller<'_, T>, ptr: u32, len: u32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

/// Writes `bytes` at `ptr`.
pub fn write<T>(caller: &mut Caller<'_, T>, ptr: u32, bytes: &[u8]) -> Result<()> {
    let mem = memory(caller)?;
    let start = ptr as usize;
    let end = start
        .checked_add(bytes.len())
        .ok_or_else(|| format_err!("guest range overflows"))?;
    let target = mem
        .data_mut(&mut *caller)
        .get_mut(start..end)
        .ok_or_else(|| format_err!("guest range {ptr}+{} is outside memory", bytes.len()))?;
    target.copy_from_slice(bytes);
    Ok(())
}

pub fn write_u32<T>(caller: &mut Caller<'_, T>, ptr: u32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

pub fn write_u64<T>(caller: &mut Caller<'_, T>, ptr: u32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Copies `bytes` into a buffer the guest allocates (through its exported
/// `proxy_on_memory_allocate`) and stores the buffer's address and length at
/// `ret_ptr` and `ret_len`, as proxy-wasm returns data to the guest.
pub fn give<T>(caller: &mut Caller<'_, T>, bytes: &[u8], ret_ptr: u32, ret_len: u32) -> Result<()> {
    let len =
        u32::try_from(bytes.len()).map_err(|_| format_err!("buffer too large for the guest"))?;
    let addr = if bytes.is_empty() {
        0
    } else {
        let alloc = caller
            .get_export("proxy_on_memory_allocate")
            .and_then(Extern::into_func)
            .ok_or_else(|| format_err!("the guest exports no proxy_on_memory_allocate"))?
            .typed::<u32, u32>(&*caller)?;
        let addr = alloc.call(&mut *caller, len)?;
        if addr == 0 {
            bail!("the guest could not allocate {len} bytes");
        }
        write(caller, addr, bytes)?;
        addr
    };
    write_u32(caller, ret_ptr, addr)?;
    write_u32(caller, ret_len, len)
}
