//! What the kernel and the hypervisor share on RISC-V under QEMU virt: both reach physical
//! memory at its own address (the kernel maps RAM and the UART one to one; the hypervisor runs
//! untranslated).

use core::fmt;

/// The NS16550 UART's transmit register.
pub const UART: u64 = 0x1000_0000;

/// The console: the NS16550, a byte at a time.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the UART's transmit register, where this code reaches it (see above).
            unsafe { core::ptr::write_volatile(UART as *mut u8, b) };
        }
        Ok(())
    }
}

/// Writes a `ret` (`jalr x0, 0(ra)`) at the start of the page at `pa` and orders it before
/// instruction fetches.
pub fn write_ret(pa: u64) {
    // SAFETY: a data page of the caller's, at its physical address; `fence.i` only orders
    // fetches.
    unsafe {
        core::ptr::write_volatile(pa as *mut u32, 0x0000_8067);
        core::arch::asm!("fence.i");
    }
}
