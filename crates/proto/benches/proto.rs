//! Benchmarks of the protocol core: recognising the request (in one slice
//! and byte by byte), validating policies, rendering.
//!
//! `cargo bench -p flashpolicy-proto` (add `-- --quick` for a fast look).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flashpolicy_proto::policy::{self, parse_allow_spec, Policy};
use flashpolicy_proto::request::{Recogniser, Verdict, POLICY_REQUEST};

/// A policy of about 1 KB: a site-control line and a dozen varied rules.
fn one_kb_policy() -> Policy {
    let specs = [
        "*.example.com:443,8000-8100",
        "example.org:843",
        "192.0.2.7:*",
        "[2001:db8::1]:1024-2048",
        "*.games.example.net:507,516-523",
        "chat.example.com:5222,5223",
        "localhost:*",
        "198.51.100.23:9000-9100",
        "*.cdn.example.com:80,443",
        "stream.example.com:1935",
        "[2001:db8::2]:843,8843",
        "203.0.113.9:6000-6010,7000",
    ];
    Policy {
        site_control: Some(policy::MetaPolicy::MasterOnly),
        allow: specs
            .iter()
            .map(|s| parse_allow_spec(s).expect("valid spec"))
            .collect(),
    }
}

fn recogniser(c: &mut Criterion) {
    let mut group = c.benchmark_group("recogniser");
    group.throughput(Throughput::Bytes(POLICY_REQUEST.len() as u64));
    group.bench_function("one_slice", |b| {
        b.iter(|| {
            let mut r = Recogniser::new();
            black_box(r.feed(black_box(POLICY_REQUEST)))
        })
    });
    group.bench_function("byte_by_byte", |b| {
        b.iter(|| {
            let mut r = Recogniser::new();
            let mut verdict = Verdict::NeedMore;
            for byte in black_box(POLICY_REQUEST).chunks(1) {
                verdict = r.feed(byte);
            }
            black_box(verdict)
        })
    });
    group.finish();
}

fn validate(c: &mut Criterion) {
    let default = Policy::allow_all().render();
    let large = one_kb_policy().render();
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Bytes(default.len() as u64));
    group.bench_function(format!("default_{}B", default.len()), |b| {
        b.iter(|| policy::validate(black_box(default.as_bytes())).expect("valid"))
    });
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function(format!("rules12_{}B", large.len()), |b| {
        b.iter(|| policy::validate(black_box(large.as_bytes())).expect("valid"))
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let default = Policy::allow_all();
    let large = one_kb_policy();
    let mut group = c.benchmark_group("render");
    group.bench_function("default", |b| b.iter(|| black_box(&default).render()));
    group.bench_function("rules12", |b| b.iter(|| black_box(&large).render()));
    group.finish();
}

criterion_group!(benches, recogniser, validate, render);
criterion_main!(benches);
