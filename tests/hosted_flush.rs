//! A flush on a hosted build: a host tool or test that builds tables of its own architecture
//! and flushes them must not run privileged instructions (which would kill it).

mod common;

use common::Frames;
use memory_addr::{pa, va};
use pagetable::{AArch64, Flush, MappingFlags as F, PageSize, PageTable, Sv39, X86_64};

#[test]
fn flushing_on_a_hosted_build_returns() {
    let mut pt = PageTable::<X86_64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
    let flush = pt
        .map(va!(0x1000), pa!(0x1000), PageSize::SIZE_4K, F::READ)
        .unwrap();
    pt.flush(flush);
    assert!(Flush::<X86_64>::all().flush().is_empty());
    assert!(Flush::<AArch64>::all().flush().is_empty());
    assert!(Flush::<Sv39>::all().flush().is_empty());
}
