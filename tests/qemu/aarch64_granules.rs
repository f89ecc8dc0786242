//! AArch64 stage 1 with the 16K and 64K granules (`-cpu max`): pages and blocks in both halves,
//! a block split, protect, remap.

use pagetable::arch::aarch64::MAIR;
use pagetable::arch::level_shift;
use pagetable::{
    AArch64, Arch, Granule16K, Granule64K, Lower, MappingFlags as F, PageSize, Upper, Va36, Va42,
    Va47, Va48,
};

use crate::aarch64::{AARCH64, tcr};
use crate::harness::{
    DATA, Edit, Platform, READ, Scenario, Space, conform_with, exec, fault, pair, qemu_available,
    read, read_value, write,
};
use crate::scenario::unfold;

/// `-cpu max`: the 16K and 64K granules (Cortex-A57 has no 16K granule).
const AARCH64_MAX: Platform = Platform {
    args: &["-M", "virt", "-cpu", "max", "-m", "2G"],
    ..AARCH64
};

/// TCR_EL1 for both halves with `bits` of VA and granule `2^shift`: TG0 (bits 14-15) 4K 0,
/// 64K 1, 16K 2; TG1 (bits 30-31) 16K 1, 4K 2, 64K 3.
fn tcr_granule(bits: u64, shift: u32) -> u64 {
    let (tg0, tg1) = match shift {
        12 => (0, 2),
        14 => (2, 1),
        _ => (1, 3),
    };
    (tcr(bits) & !(3 << 14 | 3 << 30)) | tg0 << 14 | tg1 << 30
}

/// Pages and blocks of a large granule in both halves, then edits on them: a page inside a
/// block unmapped (the block split into a table of pages), a page made read-only, a page
/// remapped. Expected values come from the plan, as in `build_with_hook`.
fn build_granule<A: Arch, B: Arch>(
    space: &mut dyn Space,
    p: &Platform,
    between: &mut dyn FnMut(&dyn Space),
) -> Scenario {
    let page = 1u64 << A::PAGE_SHIFT;
    let block = 1u64 << level_shift::<A>(2);
    let size = |shift| PageSize::from_shift(shift).unwrap();
    let data = p.image_base + DATA;
    assert_eq!(data % page, 0);
    let (r, rw, rx) = (F::READ, F::READ | F::WRITE, F::READ | F::EXECUTE);
    let (mut p1, mut p2) = (vec![], vec![]);
    let low = 0x1_0000_0000u64 + 5 * block;
    let up = unfold::<B>(0) + 3 * block;

    // Pages in both halves, VA and PA differing above the page offset.
    space.map(low + 3 * page, data + page, size(A::PAGE_SHIFT), rw);
    p1.push(read(
        low + 3 * page + 0x1238,
        data + page + 0x1238,
        "page, lower half",
    ));
    space.map(up + 7 * page, data + 2 * page, size(B::PAGE_SHIFT), r);
    p1.push(read(
        up + 7 * page + 0x2a8,
        data + 2 * page + 0x2a8,
        "page, upper half",
    ));
    p1.push(write(
        low + 3 * page + 0x40,
        0x5eed,
        true,
        "store through a writable page",
    ));
    p1.push(read_value(
        low + 3 * page + 0x40,
        0x5eed,
        "the store landed",
    ));
    p1.push(write(
        up + 7 * page,
        1,
        false,
        "store through a read-only page",
    ));

    // A block over the part of the image that holds the data area.
    let block_pa = data & !(block - 1);
    let vb = low + 8 * block;
    space.map(vb, block_pa, size(level_shift::<A>(2)), rw);
    let inside = data - block_pa;
    p1.push(read(vb + inside + 0x18, data + 0x18, "block"));
    p1.push(read(
        vb + inside + 4 * page + 8,
        data + 4 * page + 8,
        "block, a later page",
    ));

    // An executable page over the `ret` at DATA + 0x9000, and a fetch from a non-executable one.
    let ret = data + 0x9000;
    let code = ret & !(page - 1);
    space.map(low + 11 * page, code, size(A::PAGE_SHIFT), rx);
    p1.push(exec(
        low + 11 * page + (ret - code),
        true,
        "fetch from an executable page",
    ));
    p1.push(exec(
        low + 3 * page,
        false,
        "fetch from a non-executable page",
    ));

    between(space);
    space
        .edit(vb + inside + page, Edit::UnmapRegion(page))
        .unwrap();
    p2.push(fault(
        READ,
        vb + inside + page + 8,
        "a page cut out of the block",
    ));
    p2.push(read(
        vb + inside + 8,
        data + 8,
        "the block's page before it",
    ));
    p2.push(read(
        vb + inside + 2 * page,
        data + 2 * page,
        "the block's page after it",
    ));
    space.edit(low + 3 * page, Edit::Protect(r)).unwrap();
    p2.push(write(
        low + 3 * page + 0x40,
        2,
        false,
        "store after protect to read-only",
    ));
    space
        .edit(up + 7 * page, Edit::Remap(data + 3 * page))
        .unwrap();
    p2.push(read(
        up + 7 * page + 0x10,
        data + 3 * page + 0x10,
        "remapped page",
    ));
    Scenario { p1, p2 }
}

fn aarch64_granule<L: Arch, U: Arch>(name: &str) -> Result<(), String> {
    let uart_va = unfold::<U>(0) + (1 << level_shift::<U>(2));
    conform_with::<L>(
        &AARCH64_MAX,
        name,
        &|words, pa| pair::<L, U>(words, pa),
        (tcr_granule(L::VA_BITS as u64, L::PAGE_SHIFT), MAIR),
        uart_va,
        &|space, hook| build_granule::<L, U>(space, &AARCH64_MAX, hook),
        false,
    )
}

#[test]
fn qemu_aarch64_16k_48() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule16K;
        aarch64_granule::<AArch64<Va48, Lower, G>, AArch64<Va48, Upper, G>>("aarch64-16k-48")
            .unwrap();
    }
}

#[test]
fn qemu_aarch64_16k_36() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule16K;
        aarch64_granule::<AArch64<Va36, Lower, G>, AArch64<Va36, Upper, G>>("aarch64-16k-36")
            .unwrap();
    }
}

#[test]
fn qemu_aarch64_16k_47() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule16K;
        aarch64_granule::<AArch64<Va47, Lower, G>, AArch64<Va47, Upper, G>>("aarch64-16k-47")
            .unwrap();
    }
}

#[test]
fn qemu_aarch64_64k_48() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule64K;
        aarch64_granule::<AArch64<Va48, Lower, G>, AArch64<Va48, Upper, G>>("aarch64-64k-48")
            .unwrap();
    }
}

#[test]
fn qemu_aarch64_64k_42() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule64K;
        aarch64_granule::<AArch64<Va42, Lower, G>, AArch64<Va42, Upper, G>>("aarch64-64k-42")
            .unwrap();
    }
}
