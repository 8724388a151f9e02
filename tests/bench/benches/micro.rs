//! In-process micro-benchmarks for what runs on every status poll, every chat request and every
//! load: the memory probe (read and arithmetic), the chat-template rendering, and protecting a
//! model file. Run with
//! `cargo bench -p headroom-bench --bench micro`; `scripts/bench.sh` carries the figures into its
//! table.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use headroom_core::engine::template::ChatTemplate;
use headroom_core::engine::ChatMessage;
use headroom_core::memory::probe::{linux, macos};
use headroom_core::memory::{process_memory, MemoryProbe};
use headroom_core::protect::Protector;

/// A Mac with 16 GiB: 16 KiB pages, a few GiB of each kind.
const MAC: macos::VmCounters = macos::VmCounters {
    page_size: 16_384,
    wire_count: 180_000,
    internal_page_count: 420_000,
    external_page_count: 150_000,
    purgeable_count: 9_000,
    compressor_page_count: 60_000,
};

fn probe(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe");
    // What the pool and the status API call: /proc/meminfo, the cgroup, PSI, this process.
    let probe = linux::LinuxProbe::default();
    group.bench_function("linux snapshot (reads /proc)", |b| {
        b.iter(|| black_box(probe.snapshot()))
    });
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    group.bench_function("linux arithmetic (meminfo text to snapshot)", |b| {
        b.iter(|| {
            linux::parse_meminfo(black_box(&meminfo))
                .map(|host| linux::snapshot_from(host, None, None))
        })
    });
    group.bench_function("macos arithmetic (vm counters to snapshot)", |b| {
        b.iter(|| macos::snapshot_from(black_box(MAC), 16 << 30, 0, 1))
    });
    group.bench_function("process memory (/proc/self/status)", |b| {
        b.iter(|| black_box(process_memory()))
    });
    group.finish();
}

fn template(c: &mut Criterion) {
    let source = include_str!("../../../src-tauri/core/src/engine/template/smollm2.jinja");
    let Ok(template) = ChatTemplate::new(source, "<|im_start|>", "<|im_end|>") else {
        panic!("SmolLM2's template does not compile");
    };
    // A conversation of eight turns, about 600 words.
    let turns: Vec<ChatMessage> = (0..8)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            ChatMessage::new(role, &"Tell me about the shelves in room four. ".repeat(10))
        })
        .collect();
    let mut group = c.benchmark_group("template");
    group.bench_function("SmolLM2 render, 1 message", |b| {
        b.iter(|| template.render(black_box(&turns[..1]), None))
    });
    group.bench_function("SmolLM2 render, 8 messages", |b| {
        b.iter(|| template.render(black_box(&turns), None))
    });
    group.finish();
}

/// What protecting a model file adds to each load (Linux: a read lease taken, and let go at
/// unload): against a load of 100 ms and more, the share is this figure's.
fn protect(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        panic!("no Tokio runtime");
    };
    let _inside = runtime.enter();
    let Ok(dir) = tempfile::tempdir() else {
        panic!("no temporary folder");
    };
    let path = dir.path().join("model.gguf");
    if let Err(e) = std::fs::write(&path, vec![0u8; 1 << 20]) {
        panic!("cannot write {}: {e}", path.display());
    }
    let protector = Protector::start(dir.path());
    let mut group = c.benchmark_group("protect");
    group.bench_function("model file protected and let go", |b| {
        b.iter(|| black_box(protector.protect(&path, Box::new(|| {}))))
    });
    group.finish();
}

fn main() {
    // `cargo test --all-targets` runs this with libtest's arguments (`--test-threads=1`), which
    // criterion's command line refuses; there, a few short samples each show it still runs.
    let mut criterion = if std::env::args().any(|a| a.starts_with("--test-threads")) {
        Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(10))
            .measurement_time(Duration::from_millis(50))
    } else {
        Criterion::default().configure_from_args()
    };
    probe(&mut criterion);
    template(&mut criterion);
    protect(&mut criterion);
    criterion.final_summary();
}
