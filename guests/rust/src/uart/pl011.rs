//! QEMU virt's PL011 UART (AArch64), written a byte at a time at its physical address: mapped
//! one to one by the kernel, reached untranslated by the hypervisor or before the MMU is on.

use core::fmt;

/// The data register.
pub const BASE: u64 = 0x0900_0000;

pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the UART's data register, where this code reaches it (see above).
            unsafe { core::ptr::write_volatile(BASE as *mut u8, b) };
        }
        Ok(())
    }
}
