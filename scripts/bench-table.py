#!/usr/bin/env python3
"""Prints the benchmark table (median ns per page and ratios to pagetable) from criterion's
estimates in target/criterion, as Markdown; with --svg FILE also draws it as a bar chart; with
--icount FILE (the JSON that scripts/icount writes) also the table of instructions per page."""
import json, pathlib, sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
PAGES = 262144
GROUPS = [
    ("map_4k_one_at_a_time", "map 4K pages one call at a time (cursor; `pagetable_plain`: `PageTable::map`)", PAGES),
    ("map_region_4k_1g", "map_region 1 GiB, 4K leaves", PAGES),
    ("map_region_huge_1g", "map_region 1 GiB, huge leaves", PAGES),
    ("map_region_huge_64g", "map_region 64 GiB, huge leaves", 64 * PAGES),
    ("map_scattered_4k_1g", "map 1 GiB of 4K onto scattered frames", PAGES),
    ("query_random_warm", "query, random mapped address, warm (`pagetable_translate`: address and size only)", 4096),
    ("unmap_4k_random_order", "unmap single 4K pages in random order (64 Ki pages of a GiB), freeing tables", 65536),
    ("unmap_region_4k_1g", "unmap_region 1 GiB of 4K, freeing tables", PAGES),
    ("unmap_half_mapped_1g", "munmap of a half-mapped GiB (alternating 64 KiB runs), per page of range", PAGES),
    ("protect_region_4k_1g", "protect_region 1 GiB of 4K", PAGES),
    ("walk_1g_of_4k", "walk every mapping of 1 GiB of 4K", PAGES),
    ("walk_1g_of_4k_addresses", "same, the closure reads each mapping's address", PAGES),
    ("mixed_trace", "mixed kernel-like trace (per operation)", None),
    ("trace_python_tests", "trace: CPython's tests (per system call)", None),
    ("trace_cargo_build", "trace: cargo build (per system call)", None),
    ("trace_cargo_release_tests", "trace: cargo build --release of a test (per system call)", None),
    ("trace_python_tests_faults", "demand paging: CPython's tests, page faults and system calls (per event)", None),
]
CRATES = ["pagetable", "pagetable_plain", "pagetable_translate", "pagetable_cursor", "page_table_multiarch", "x86_64", "hand_written",
          "pagetable_aarch64", "aarch64_paging", "aarch64_paging_compact", "pagetable_aarch64_s2", "pagetable_aarch64_64k"]
# Same-mode ratios: aarch64-paging against our AArch64 mode, everything else against our x86_64
# (for stage 2 and the 64K granule: the same call over the same range in another mode).
ARM = ("aarch64_paging", "aarch64_paging_compact")


def median(group, crate):
    f = ROOT / group / crate / "new" / "estimates.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())["median"]["point_estimate"]


def fmt(ns):
    return f"{ns:.3g}" if ns < 100 else f"{ns:.0f}"


rows = []
print("| workload (ns per page; ratio to pagetable, >1 = slower) | " + " | ".join(CRATES) + " |")
print("|---" * (len(CRATES) + 1) + "|")
for group, title, per in GROUPS:
    cells = []
    meds = {c: median(group, c) for c in CRATES}
    if all(v is None for v in meds.values()):
        continue
    n = per if per else json.loads((ROOT / group / "pagetable" / "new" / "benchmark.json").read_text())["throughput"]["Elements"]
    ours = meds["pagetable"]
    ours_arm = meds["pagetable_aarch64"]
    for c in CRATES:
        v = meds[c]
        if v is None:
            cells.append("–")
            continue
        base = ours_arm if c in ARM and ours_arm else ours
        ratio = f" ({v / base:.2g}x)" if base and c not in ("pagetable",) else ""
        cells.append(fmt(v / n) + ratio)
    rows.append((title, {c: (meds[c] / n if meds[c] else None) for c in CRATES}))
    print(f"| {title} | " + " | ".join(cells) + " |")

if "--icount" in sys.argv:
    counts = json.loads(pathlib.Path(sys.argv[sys.argv.index("--icount") + 1]).read_text())
    print()
    print("| workload (instructions per page; ratio to pagetable) | " + " | ".join(CRATES) + " |")
    print("|---" * (len(CRATES) + 1) + "|")
    for group, title, _ in GROUPS:
        g = counts.get(group, {})
        cells = []
        for c in CRATES:
            v = g.get(c)
            base = (c in ARM and g.get("pagetable_aarch64")) or g.get("pagetable")
            if v is None:
                cells.append("–")
            elif c == "pagetable" or not base:
                cells.append(fmt(v))
            else:
                cells.append(f"{fmt(v)} ({v / base:.2g}x)")
        print(f"| {title} | " + " | ".join(cells) + " |")

if "--svg" in sys.argv:
    out = pathlib.Path(sys.argv[sys.argv.index("--svg") + 1])
    colors = dict(zip(CRATES, ["#1f77b4", "#aec7e8", "#98df8a", "#c5b0d5", "#d62728", "#ff7f0e", "#7f7f7f", "#17becf", "#9467bd", "#e377c2", "#bcbd22", "#8c564b"]))
    import math
    bar_h, gap, left, width = 9, 14, 300, 420
    y = 40
    parts = []
    lo, hi = -3, 5  # log10 ns per page (or per call) axis: 0.001 .. 100000
    for title, vals in rows:
        parts.append(f'<text x="5" y="{y + 3 * bar_h}" font-size="11">{title}</text>')
        for c in CRATES:
            v = vals[c]
            if v is None:
                continue
            w = max(1, (math.log10(v) - lo) / (hi - lo) * width)
            parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" fill="{colors[c]}"/>')
            parts.append(f'<text x="{left + w + 3:.1f}" y="{y + bar_h - 1}" font-size="8">{fmt(v)}</text>')
            y += bar_h
        y += gap
    legend = "".join(
        f'<rect x="{5 + i * 150}" y="5" width="9" height="9" fill="{colors[c]}"/><text x="{5 + i * 150 + 12}" y="13" font-size="9">{c}</text>'
        for i, c in enumerate(CRATES[:6])
    ) + "".join(
        f'<rect x="{5 + i * 150}" y="17" width="9" height="9" fill="{colors[c]}"/><text x="{5 + i * 150 + 12}" y="25" font-size="9">{c}</text>'
        for i, c in enumerate(CRATES[6:])
    )
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{y + 20}" font-family="sans-serif">' \
          f'<rect width="100%" height="100%" fill="white"/>{legend}{"".join(parts)}' \
          f'<text x="{left}" y="{y + 12}" font-size="9">ns per page (traces: per system call), log scale (0.001 to 100000)</text></svg>'
    out.write_text(svg)
