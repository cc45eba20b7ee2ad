//! Does a flood aimed at another account slow `tr-main`'s signed webhooks? Two floods:
//!
//! - unsigned Decentro-shaped callbacks, each naming a transaction nobody has: refused after
//!   one read (they name no intent of ours), nothing written;
//! - webhooks signed with another Pientegra account's secret (`tr-other`: what someone
//!   holding that secret can send), each naming a deposit nobody has: parked, bounded per
//!   account, then refused on a reader once the account is full.
//!
//! Reports, in one run and at one rate: signed webhooks alone (the baseline), then beside each
//! flood (the parked one while it fills the quota and once it is full), p50/p99 and the ratio
//! to the baseline's p99; and how many rows the floods left against the cap.
//!
//! Run: `cargo bench -p intentkit-bench --bench parked_flood`
//! Options: `BENCH_WEBHOOKS` (default 1000 per phase), `BENCH_RATE` (webhooks/s, default
//! 300; the flood is offered at twice that), `BENCH_DIR`.

use std::sync::Arc;
use std::time::Duration;

use intentkit_bench::webhooks::{deliver, setup, webhooks};
use intentkit_bench::{OpenLoop, env_usize, ms, open_loop, percentile, runtime, scratch_dir};
use intentkit_core::provider::Secret;
use intentkit_core::provider::config::{DecentroAccount, HttpSettings, PientegraAccount};
use intentkit_core::provider::pientegra::WebhookSecrets;
use intentkit_core::{AccountName, Engine, EngineSettings, Provider};

/// The Decentro account the unsigned flood is aimed at.
const UNSIGNED: &str = "in-flood";
/// The Pientegra account whose secret signs the parked flood.
const OTHER: &str = "tr-other";
const OTHER_SECRET: &str = "whsec_b3RoZXItYWNjb3VudA";

/// Which flood runs beside the measured webhooks.
#[derive(Clone, Copy)]
enum Flood {
    Unsigned,
    SignedForUnknownDeposits,
}

fn flood_delivery(flood: Flood, n: usize) -> (Provider, &'static str, Option<String>, Vec<u8>) {
    match flood {
        Flood::Unsigned => (
            Provider::Decentro,
            UNSIGNED,
            None,
            format!(
                r#"{{"decentroTxnId":"DCTRFLOOD{n:010}","referenceId":"nobody-{n}","transactionStatus":"SUCCESS","payerName":"Mallory","payerAccountNumber":"XXXX0000","payerIfsc":"EVIL0000001"}}"#
            )
            .into_bytes(),
        ),
        Flood::SignedForUnknownDeposits => {
            let body = format!(
                r#"{{"eventId":"flood-{n:010}","eventType":"intent.approved","intent":{{"id":"ffff0000-0000-7000-8000-{n:012}","amount":"100000","currency":"TRY","status":"APPROVED"}}}}"#
            );
            let t = intentkit_core::Clock::now(&intentkit_core::SystemClock).unix_millis();
            let header = intentkit_core::provider::pientegra::signature_header(
                &Secret::new(OTHER_SECRET),
                t,
                body.as_bytes(),
            );
            (Provider::Pientegra, OTHER, Some(header), body.into_bytes())
        }
    }
}

/// Offers `count` signed webhooks at `interval`, and, if a flood is given, its deliveries at
/// twice the rate from a thread of its own, numbered from `from`.
fn phase(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<Engine>,
    hooks: Vec<(String, Vec<u8>)>,
    interval: Duration,
    flood: Option<(Flood, usize)>,
) -> (OpenLoop, Option<OpenLoop>) {
    let account = AccountName::new("tr-main").expect("account");
    let count = hooks.len();
    std::thread::scope(|s| {
        let flood = flood.map(|(kind, from)| {
            let engine = engine.clone();
            s.spawn(move || {
                // Two deliveries per webhook slot, over the same time span.
                open_loop(rt, 2 * count, interval / 2, |i| {
                    let engine = engine.clone();
                    let (provider, account, header, body) = flood_delivery(kind, from + i);
                    async move {
                        engine
                            .handle_webhook(
                                provider,
                                account,
                                move |n| {
                                    (n == "Pientegra-Signature")
                                        .then(|| header.clone())
                                        .flatten()
                                },
                                &body,
                            )
                            .await;
                    }
                })
            })
        });
        let mut hooks = hooks.into_iter();
        let ours = open_loop(rt, count, interval, |_| {
            let (header, body) = hooks.next().expect("one webhook per slot");
            let engine = engine.clone();
            let account = account.clone();
            async move { deliver(&engine, &account, &header, &body).await }
        });
        (ours, flood.map(|f| f.join().expect("flood thread")))
    })
}

fn report(name: &str, o: &OpenLoop, baseline_p99: Option<Duration>) {
    let p99 = percentile(&o.latencies, 0.99);
    let ratio = baseline_p99.map_or(String::new(), |b| {
        format!("  {:.2}x baseline p99", p99.as_secs_f64() / b.as_secs_f64())
    });
    println!(
        "  {name:<34} p50 {:>6.2} ms  p99 {:>6.2} ms{ratio}  ({}; generator late p99 {:.2} ms; {:.2} cores busy)",
        ms(percentile(&o.latencies, 0.50)),
        ms(p99),
        o.steal.describe(),
        ms(percentile(&o.lateness, 0.99)),
        o.cores_used.unwrap_or(f64::NAN),
    );
}

fn main() {
    let n = env_usize("BENCH_WEBHOOKS", 1_000).max(10);
    let rate = env_usize("BENCH_RATE", 300).max(1);
    let dir = scratch_dir();
    let rt = runtime();
    let cap = EngineSettings::default().parked_cap_per_account;
    let (engine, ids) = setup(dir.path(), "flood", n * 4, |p| {
        let name = AccountName::new(UNSIGNED).expect("account");
        p.decentro.insert(
            name.clone(),
            DecentroAccount {
                name,
                // Never called: the flood names no intent of ours, so nothing is looked up.
                base_url: "http://127.0.0.1:9".into(),
                client_id: Secret::new("c"),
                client_secret: Secret::new("c"),
                module_secret: Secret::new("m"),
                provider_secret: Secret::new("p"),
                http: HttpSettings::default(),
            },
        );
        let main = p
            .pientegra
            .values()
            .next()
            .cloned()
            .expect("the measured account");
        let other = AccountName::new(OTHER).expect("account");
        p.pientegra.insert(
            other.clone(),
            PientegraAccount {
                name: other,
                webhook: WebhookSecrets {
                    current: Secret::new(OTHER_SECRET),
                    previous: None,
                },
                ..main
            },
        );
    });
    let engine = Arc::new(engine);
    let mut hooks = webhooks(&ids).into_iter();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut take = || hooks.by_ref().take(n).collect::<Vec<_>>();

    println!(
        "parked-flood benchmark ({n} signed webhooks per phase at {rate}/s; floods at {}/s to other accounts; cap {cap} parked per account; {} cores)",
        rate * 2,
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    let (alone, _) = phase(&rt, &engine, take(), interval, None);
    let baseline = percentile(&alone.latencies, 0.99);
    report("signed webhooks alone", &alone, None);
    let (unsigned, f0) = phase(&rt, &engine, take(), interval, Some((Flood::Unsigned, 0)));
    report("beside unsigned callbacks", &unsigned, Some(baseline));
    let (filling, f1) = phase(
        &rt,
        &engine,
        take(),
        interval,
        Some((Flood::SignedForUnknownDeposits, 0)),
    );
    report("while tr-other's flood parks", &filling, Some(baseline));
    let (full, f2) = phase(
        &rt,
        &engine,
        take(),
        interval,
        Some((Flood::SignedForUnknownDeposits, 10 * n)),
    );
    report("once tr-other's quota is full", &full, Some(baseline));
    for (name, f) in [
        ("unsigned", f0),
        ("tr-other, parking", f1),
        ("tr-other, full", f2),
    ] {
        if let Some(f) = f {
            println!(
                "  flood ({name}): {} answered, p99 {:.2} ms",
                f.latencies.len(),
                ms(percentile(&f.latencies, 0.99))
            );
        }
    }
    // Every flood delivery names something nobody has: what is parked is the flood.
    let conn = rusqlite::Connection::open(dir.path().join("flood.db")).expect("open");
    let parked: i64 = conn
        .query_row("SELECT COUNT(*) FROM parked_events", [], |r| r.get(0))
        .expect("count");
    let size: u64 = ["flood.db", "flood.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "  parked rows after {} flood deliveries: {parked} (cap {cap}); database + WAL {:.1} MiB",
        6 * n,
        size as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  reproduce: cargo bench -p intentkit-bench --bench parked_flood  (BENCH_WEBHOOKS, BENCH_RATE)"
    );
}
