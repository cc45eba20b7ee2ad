//! The Rust side of `bench/ffi_get.sh`: the same `get` the C ABI makes, called from Rust on a
//! runtime like the handle's, on the same database, for the intent the C run created.
//! Env: `FFI_BENCH_DB` (the SQLite file), `FFI_BENCH_ID` (the intent), `FFI_BENCH_CALLS`.
//! Prints the ns per call. Without the env it explains and exits (so `cargo bench` passes).

use std::time::Instant;

use intentkit_core::{Engine, IntentId, provider::config::ProvidersConfig};

fn main() {
    let (Ok(db), Ok(id)) = (std::env::var("FFI_BENCH_DB"), std::env::var("FFI_BENCH_ID")) else {
        println!("ffi_get: run bench/ffi_get.sh (it sets FFI_BENCH_DB and FFI_BENCH_ID)");
        return;
    };
    let calls = intentkit_bench::env_usize("FFI_BENCH_CALLS", 20_000);
    let id: IntentId = id.parse().expect("intent id");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = {
        let _guard = runtime.enter();
        Engine::open_sqlite(std::path::Path::new(&db), &ProvidersConfig::default()).expect("engine")
    };
    for _ in 0..calls / 10 {
        runtime.block_on(engine.get(id)).expect("get");
    }
    let start = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(runtime.block_on(engine.get(id)).expect("get"));
    }
    println!("{:.0}", start.elapsed().as_nanos() as f64 / calls as f64);
}
