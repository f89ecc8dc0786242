//! The scenario every mode runs: leaves of every size in both halves of the address space,
//! permissions, then edits (unmap, protect, a split, a remap, a hole cut out of a 1G leaf) and
//! the same addresses again.

use pagetable::arch::{level_shift, root_depth};
use pagetable::{Arch, MappingFlags as F, PageSize, VaSpace};

use crate::harness::{
    DATA, Edit, MIB, MakeSpace, Platform, READ, Roots, Scenario, Space, conform_with, exec, fault,
    one, read, read_value, write,
};

/// Sign-extends (or, for AArch64's upper range, fills) a folded address of mode `A`.
pub fn unfold<A: Arch>(folded: u64) -> u64 {
    let n = A::VA_BITS;
    match A::VA_SPACE {
        VaSpace::Lower => folded,
        VaSpace::Upper => folded | !((1 << n) - 1),
        VaSpace::Canonical => (((folded << (64 - n)) as i64) >> (64 - n)) as u64,
    }
}

/// The address with these table indices, root first (missing ones are zero), plus `offset`.
pub fn va<A: Arch>(indices: &[u64], offset: u64) -> u64 {
    let levels = root_depth::<A>();
    let mut folded = offset;
    for (k, &i) in indices.iter().enumerate() {
        folded |= i << level_shift::<A>(levels - k as u8);
    }
    unfold::<A>(folded)
}

/// Indices below the root for a 4 KiB probe slot `l1`: distinct at every level, and different
/// from the physical address's.
pub fn slot<A: Arch>(root: u64, l1: u64) -> Vec<u64> {
    let tail = [0x011, 0x0ab, 0x0cd];
    let below = root_depth::<A>() as usize - 1;
    let mut v = vec![root];
    v.extend_from_slice(&tail[tail.len() - (below - 1)..]);
    v.push(l1);
    v
}

/// Maps the scenario into `space` and returns the probes. `lower` and `upper` are root indices
/// for test mappings in each half, whose modes are `A` and `B` (the same mode but for AArch64);
/// `huge_extra` lists the mode's leaves above 1 GiB as (indices, size).
pub fn build_with_hook<A: Arch, B: Arch>(
    space: &mut dyn Space,
    p: &Platform,
    lower: u64,
    upper: u64,
    huge_extra: &[(&[u64], PageSize)],
    between: &mut dyn FnMut(&dyn Space),
) -> Scenario {
    let base = p.image_base;
    let data = base + DATA;
    let (r, rw, rx) = (F::READ, F::READ | F::WRITE, F::READ | F::EXECUTE);
    let mut p1 = vec![];
    let mut p2 = vec![];

    // 4 KiB leaves in both halves, VA and PA differing in every index and in the page offset.
    let low4k = va::<A>(&slot::<A>(lower, 0x0ef), 0);
    space.map(low4k, data + 0x3000, PageSize::SIZE_4K, r);
    p1.push(read(low4k + 0x568, data + 0x3568, "4K leaf, lower half"));
    let up4k = va::<B>(&slot::<B>(upper, 0x0e1), 0);
    space.map(up4k, data + 0x5000, PageSize::SIZE_4K, r);
    p1.push(read(up4k + 0x9a8, data + 0x59a8, "4K leaf, upper half"));

    // A 2 MiB leaf over the data area.
    let mut idx = slot::<A>(lower, 0);
    let l2 = idx.len() - 2;
    idx[l2] = 0x0d1;
    let v2m = va::<A>(&idx, 0);
    space.map(v2m, data, PageSize::SIZE_2M, rw);
    p1.push(read(v2m + 0x12_3458, data + 0x12_3458, "2M leaf"));

    // A 1 GiB leaf over the gigabyte that holds the image.
    let g1 = base & !((1 << 30) - 1);
    let v1g = if root_depth::<A>() == 3 {
        va::<A>(&[lower + 2], 0)
    } else {
        let mut idx = slot::<A>(lower, 0);
        idx.truncate(idx.len() - 2);
        let last = idx.len() - 1;
        idx[last] = 0x0e5;
        va::<A>(&idx, 0)
    };
    space.map(v1g, g1, PageSize::SIZE_1G, rw);
    p1.push(read(
        v1g + (data - g1) + 0x1_0008,
        data + 0x1_0008,
        "1G leaf",
    ));

    for &(indices, size) in huge_extra {
        let v = va::<A>(indices, 0);
        space.map(v, 0, size, r);
        p1.push(read(
            v + data + 0x2_0010,
            data + 0x2_0010,
            if size == PageSize::SIZE_512G {
                "512G leaf"
            } else {
                "256T leaf"
            },
        ));
    }

    // A store through a writable leaf, read back through a read-only alias in the other half.
    let w = va::<A>(&slot::<A>(lower, 0x101), 0);
    let alias = va::<B>(&slot::<B>(upper, 0x103), 0);
    space.map(w, data + 0x7000, PageSize::SIZE_4K, rw);
    space.map(alias, data + 0x7000, PageSize::SIZE_4K, r);
    p1.push(write(
        w + 0x20,
        0x1122_3344_5566_7788,
        true,
        "store through a writable leaf",
    ));
    p1.push(read_value(
        alias + 0x20,
        0x1122_3344_5566_7788,
        "the store, through an alias",
    ));

    // Read-only, no-execute, execute, unmapped.
    let ro = va::<A>(&slot::<A>(lower, 0x105), 0);
    space.map(ro, data + 0x8000, PageSize::SIZE_4K, r);
    p1.push(write(ro + 0x30, 1, false, "store to a read-only leaf"));
    p1.push(read(ro + 0x30, data + 0x8030, "read of the read-only leaf"));
    let code = data + 0x9000;
    let nx = va::<A>(&slot::<A>(lower, 0x107), 0);
    let x = va::<B>(&slot::<B>(upper, 0x109), 0);
    space.map(nx, code, PageSize::SIZE_4K, r);
    space.map(x, code, PageSize::SIZE_4K, rx);
    if p.nx_fetch_observable {
        p1.push(exec(nx, false, "fetch from a no-execute leaf"));
    }
    if p.write_only {
        let wo = va::<A>(&slot::<A>(lower, 0x111), 0);
        space.map(wo, data + 0xb000, PageSize::SIZE_4K, F::WRITE);
        p1.push(fault(READ, wo + 0x18, "read of a write-only leaf"));
        p1.push(write(wo + 0x18, 0x5555, true, "store to a write-only leaf"));
        p1.push(read_value(
            v2m + 0xb018,
            0x5555,
            "the store, through the 2M leaf",
        ));
    }
    p1.push(exec(x, true, "fetch from an executable leaf"));
    p1.push(fault(
        READ,
        va::<A>(&slot::<A>(lower, 0x10b), 0),
        "unmapped page in a populated table",
    ));
    p1.push(fault(
        READ,
        va::<A>(&[lower + 4], 0x40),
        "unmapped root entry",
    ));

    if p.exec_only {
        let xo = va::<A>(&slot::<A>(lower, 0x113), 0);
        space.map(xo, code, PageSize::SIZE_4K, F::EXECUTE);
        p1.push(exec(xo, true, "fetch from an execute-only leaf"));
        p1.push(fault(READ, xo, "read of an execute-only leaf"));
    }

    // User pages, touched from the supervisor (a second stage has none).
    if !p.stage2 {
        let user = va::<A>(&slot::<A>(lower, 0x10d), 0);
        let user_x = va::<A>(&slot::<A>(lower, 0x10f), 0);
        space.map(user, data + 0xa000, PageSize::SIZE_4K, rw | F::USER);
        space.map(user_x, code, PageSize::SIZE_4K, rx | F::USER);
        p1.push(if p.user_read_faults {
            fault(READ, user + 8, "supervisor read of a user page")
        } else {
            read(user + 8, data + 0xa008, "supervisor read of a user page")
        });
        p1.push(exec(
            user_x,
            !p.user_exec_faults,
            "supervisor fetch from a user page",
        ));
    }

    // Phase 2: the edits, then the same addresses again.
    between(space);
    space.edit(low4k, Edit::Unmap).unwrap();
    p2.push(fault(READ, low4k + 0x568, "after unmap"));
    space.edit(w, Edit::Protect(r)).unwrap();
    p2.push(write(
        w + 0x28,
        2,
        false,
        "store after protect to read-only",
    ));
    space
        .edit(v2m + 0x1_3000, Edit::ProtectRegion(0x1000, r))
        .unwrap();
    p2.push(write(
        v2m + 0x1_3010,
        3,
        false,
        "store to a page made read-only inside a split 2M leaf",
    ));
    p2.push(write(
        v2m + 0x1_4010,
        0x4444,
        true,
        "store to its writable neighbour",
    ));
    p2.push(read_value(v2m + 0x1_4010, 0x4444, "read back"));
    p2.push(read(
        v2m + 0x12_3458,
        data + 0x12_3458,
        "the rest of the split leaf",
    ));
    space.edit(up4k, Edit::Remap(data + 0x6000)).unwrap();
    p2.push(read(up4k + 0x9a8, data + 0x69a8, "after remap"));
    space
        .edit(v1g + 2 * MIB, Edit::UnmapRegion(2 * MIB))
        .unwrap();
    p2.push(fault(
        READ,
        v1g + 2 * MIB + 8,
        "inside a 2M hole cut out of the 1G leaf",
    ));
    p2.push(read(
        v1g + (data - g1) + 0x1_0008,
        data + 0x1_0008,
        "the rest of the 1G leaf",
    ));
    Scenario { p1, p2 }
}

/// Builds, runs and checks one mode; with `corrupt`, first points the lower-half 4 KiB leaf at
/// the wrong frame and returns the check's verdict instead of asserting it.
///
/// `A` and `B` are the modes of the lower and upper halves; `make` builds the space over the
/// table area of the image (words, and their physical address).
#[allow(clippy::too_many_arguments)]
pub fn conform<A: Arch, B: Arch>(
    p: &Platform,
    name: &str,
    make: &MakeSpace,
    regs: (u64, u64),
    uart_va: u64,
    lower: u64,
    upper: u64,
    huge_extra: &[(&[u64], PageSize)],
    corrupt: bool,
) -> Result<(), String> {
    let build = |space: &mut dyn Space, hook: &mut dyn FnMut(&dyn Space)| {
        build_with_hook::<A, B>(space, p, lower, upper, huge_extra, hook)
    };
    conform_with::<A>(p, name, make, regs, uart_va, &build, corrupt)
}

/// [`conform`] for a mode with one table over the whole address space: `roots` turns the root's
/// physical address into what the guest loads (satp, hgatp, PGDL and PGDH, ...). Test mappings
/// go at root indices 3 and up, and 3 from the top; the device page near the top.
pub fn single<A: Arch>(
    p: &Platform,
    name: &str,
    roots: fn(u64) -> (u64, u64),
    regs: (u64, u64),
    huge_extra: &[(&[u64], PageSize)],
    corrupt: bool,
) -> Result<(), String> {
    let entries = 1u64 << (A::VA_BITS - level_shift::<A>(root_depth::<A>()));
    let uart_va = va::<A>(&[entries - 1, 0x1fe], 0) & !0xfff;
    conform::<A, A>(
        p,
        name,
        &move |words, pa| {
            Box::new(Roots {
                inner: one::<A>(words, pa),
                roots: Box::new(roots),
            })
        },
        regs,
        uart_va,
        3,
        entries - 3,
        huge_extra,
        corrupt,
    )
}

/// A negative control's verdict: the run with the lower-half 4 KiB leaf pointed at the wrong
/// frame must fail, at that probe and nowhere else.
pub fn assert_only_corrupted_probe_fails(verdict: Result<(), String>) {
    let err = verdict.expect_err("a leaf pointed at the wrong frame must fail the suite");
    assert!(err.contains("probe 0 (4K leaf, lower half"), "{err}");
    assert_eq!(
        err.lines().count(),
        1,
        "only the corrupted probe fails: {err}"
    );
}
