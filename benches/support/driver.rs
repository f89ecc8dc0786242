//! Two drivers for one set of workloads: criterion's timing, and an instruction count.
//!
//! The workloads are written against [`Group`] and [`Bencher`], which forward to criterion
//! unless the environment variable `PAGETABLE_ICOUNT` is set. Then every benchmark runs its
//! routine twice, and the second run happens inside [`icount_measured`], a function that does
//! nothing else. Under `valgrind --tool=callgrind --toggle-collect='*icount_measured*'
//! --dump-after=paging::driver::icount_measured`, each measured run becomes one profile dump holding
//! exactly the instructions of that routine; `scripts/icount` runs this and prints
//! instructions per element. Setup (the tables a routine starts from) is never counted.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};

/// Whether this run counts instructions instead of timing.
pub fn counting() -> bool {
    std::env::var_os("PAGETABLE_ICOUNT").is_some()
}

/// The one function whose instructions are counted.
#[inline(never)]
pub fn icount_measured<O>(f: impl FnOnce() -> O) -> O {
    black_box(f())
}

/// A benchmark group: criterion's, or a counting stand-in.
pub struct Group<'a> {
    name: String,
    elements: u64,
    inner: Option<BenchmarkGroup<'a, WallTime>>,
}

impl<'a> Group<'a> {
    /// Starts the group `name`.
    pub fn new(c: &'a mut Criterion, name: &str) -> Self {
        let inner = (!counting()).then(|| c.benchmark_group(name));
        Group {
            name: name.to_string(),
            elements: 1,
            inner,
        }
    }

    /// Samples per benchmark (timing only).
    pub fn sample_size(&mut self, n: usize) {
        if let Some(g) = &mut self.inner {
            g.sample_size(n);
        }
    }

    /// Any other setting of criterion's group (timing only).
    pub fn timing(&mut self, f: impl FnOnce(&mut BenchmarkGroup<'a, WallTime>)) {
        if let Some(g) = &mut self.inner {
            f(g);
        }
    }

    /// Elements (pages, operations) per run: times and counts are reported per element.
    pub fn throughput(&mut self, t: Throughput) {
        if let Throughput::Elements(n) = t {
            self.elements = n;
        }
        if let Some(g) = &mut self.inner {
            g.throughput(t);
        }
    }

    /// Times `f`, or runs it once to be counted. The line printed before each counted run
    /// tells `scripts/icount` which dump belongs to which benchmark.
    pub fn bench_function(&mut self, id: &str, mut f: impl FnMut(&mut Bencher<'_, '_>)) {
        match &mut self.inner {
            Some(g) => {
                g.bench_function(id, |b| f(&mut Bencher::Time(b)));
            }
            None => {
                let name = format!("{}/{id}", self.name);
                // `PAGETABLE_ICOUNT_ONLY=text` counts only the benchmarks whose name holds it.
                if std::env::var("PAGETABLE_ICOUNT_ONLY").is_ok_and(|only| !name.contains(&only)) {
                    return;
                }
                println!("icount {name} {}", self.elements);
                f(&mut Bencher::Count);
            }
        }
    }

    /// Ends the group.
    pub fn finish(self) {
        if let Some(g) = self.inner {
            g.finish();
        }
    }
}

/// Runs a routine: timed by criterion, or once to warm up and once to be counted.
pub enum Bencher<'a, 'b> {
    Time(&'a mut criterion::Bencher<'b>),
    Count,
}

impl Bencher<'_, '_> {
    /// Like criterion's `iter`.
    pub fn iter<O>(&mut self, mut routine: impl FnMut() -> O) {
        match self {
            Bencher::Time(b) => b.iter(routine),
            Bencher::Count => {
                black_box(routine());
                icount_measured(routine);
            }
        }
    }

    /// Like criterion's `iter_batched`: `setup` and dropping the output are not measured.
    pub fn iter_batched<I, O>(
        &mut self,
        mut setup: impl FnMut() -> I,
        mut routine: impl FnMut(I) -> O,
        size: BatchSize,
    ) {
        match self {
            Bencher::Time(b) => b.iter_batched(setup, routine, size),
            Bencher::Count => {
                drop(black_box(routine(setup())));
                let input = setup();
                let output = icount_measured(|| routine(input));
                drop(output);
            }
        }
    }
}
