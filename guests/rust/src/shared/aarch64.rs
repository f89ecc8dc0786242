//! What the kernel and the hypervisor share on AArch64 under QEMU virt: both reach physical
//! memory at its own address (the kernel maps RAM and the UART one to one; the hypervisor runs
//! untranslated).

use core::fmt;

/// The PL011 UART's data register.
pub const UART: u64 = 0x0900_0000;

/// The console: the PL011, a byte at a time.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the UART's data register, where this code reaches it (see above).
            unsafe { core::ptr::write_volatile(UART as *mut u8, b) };
        }
        Ok(())
    }
}

/// Writes a `ret` at the start of the page at `pa` and makes it visible to instruction fetches
/// (through whatever translation the fetch then takes).
pub fn write_ret(pa: u64) {
    // SAFETY: a data page of the caller's, at its physical address; the cache maintenance
    // only cleans and invalidates.
    unsafe {
        core::ptr::write_volatile(pa as *mut u32, 0xd65f_03c0);
        core::arch::asm!("dc cvau, {a}", "dsb ish", "ic iallu", "dsb ish", "isb", a = in(reg) pa);
    }
}
