//! Shared helpers for intentkit's benchmarks. Every benchmark prints a baseline measured in the
//! same run and the ratio to it, because the machines are shared and absolute numbers drift.

pub mod http;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The baseline every durable figure is compared with: plain rusqlite inserts of
/// `row_bytes`-sized rows, one transaction each, with the store's own pragmas (WAL,
/// `synchronous=FULL`), in a fresh file under `dir`. Returns rows per second.
pub fn plain_insert_rate(dir: &Path, name: &str, rows: usize, row_bytes: usize) -> f64 {
    plain_inserts(dir, name, rows, row_bytes).0
}

/// [`plain_insert_rate`], with each commit's latency, sorted.
pub fn plain_inserts(
    dir: &Path,
    name: &str,
    rows: usize,
    row_bytes: usize,
) -> (f64, Vec<Duration>) {
    let conn = plain_insert_table(dir, name);
    let payload = "x".repeat(row_bytes);
    let mut latencies = Vec::with_capacity(rows);
    let start = Instant::now();
    for _ in 0..rows {
        let one = Instant::now();
        plain_insert(&conn, &payload);
        latencies.push(one.elapsed());
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

/// The middle value.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The value below which `p` (0 to 1) of `sorted` lies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Where benchmark databases go: `BENCH_DIR`, or the workspace's `target/`, so that the
/// measured path and the baseline share one disk.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// A fresh directory under [`bench_dir`], removed when dropped: the disk every figure is on.
pub fn scratch_dir() -> tempfile::TempDir {
    let root = bench_dir();
    std::fs::create_dir_all(&root).expect("bench dir");
    tempfile::tempdir_in(&root).expect("tempdir")
}

/// The multi-threaded runtime a bench drives its engine, receiver or server from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A whole-number environment setting, or its default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A duration in milliseconds, for report lines.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time the hypervisor gave to other guests while a phase ran ("steal", from
/// `/proc/stat`). On a shared virtual machine a phase with high steal measures the neighbours,
/// not us: a latency figure is printed with the steal seen during it, so a reader can tell.
#[derive(Clone, Copy, Debug)]
pub struct Steal {
    start: Option<(u64, u64)>,
}

impl Steal {
    /// Starts counting.
    pub fn start() -> Self {
        Steal { start: cpu_ticks() }
    }

    /// Percent of all CPU time stolen since [`Steal::start`], if the kernel reports it.
    pub fn percent(&self) -> Option<f64> {
        let (steal0, total0) = self.start?;
        let (steal1, total1) = cpu_ticks()?;
        let total = total1.checked_sub(total0)?;
        (total > 0).then(|| 100.0 * steal1.saturating_sub(steal0) as f64 / total as f64)
    }

    /// `percent` as text for a report line.
    pub fn describe(&self) -> String {
        self.percent()
            .map_or_else(|| "steal n/a".into(), |p| format!("steal {p:.0}%"))
    }
}

/// CPU time this process has used (user + system), from `/proc/self/stat`.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// (steal, total) ticks from the aggregate `cpu` line of `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    // already counted in user.
    let steal = *fields.get(7)?;
    Some((steal, fields.iter().take(8).sum()))
}

/// What an open-loop phase measured.
#[derive(Debug)]
pub struct OpenLoop {
    /// Each operation's latency from its scheduled start to its end, sorted.
    pub latencies: Vec<Duration>,
    /// How late the generator started each operation, sorted (already inside `latencies`).
    pub lateness: Vec<Duration>,
    /// CPU steal during the phase.
    pub steal: Steal,
    /// This process's CPU time during the phase, as a share of one core (1.0 = one core busy).
    pub cores_used: Option<f64>,
}

/// Offers one operation per `interval`, open loop: each starts on schedule, whether or not the
/// ones before it finished, and its latency counts from its scheduled start, so a stall is
/// charged to every operation it delayed. The schedule is kept by a thread of its own, not by
/// tokio's millisecond timer, which would fire up to a millisecond late and charge that to the
/// system measured.
pub fn open_loop<F, Fut>(
    rt: &tokio::runtime::Runtime,
    count: usize,
    interval: Duration,
    mut op: F,
) -> OpenLoop
where
    F: FnMut(usize) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = rt.handle().clone();
    let steal = Steal::start();
    let (cpu0, wall0) = (process_cpu(), Instant::now());
    let (tasks, mut lateness) = std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now() + Duration::from_millis(5);
            let mut tasks = Vec::with_capacity(count);
            let mut lateness = Vec::with_capacity(count);
            for i in 0..count {
                let due = start + interval.mul_f64(i as f64);
                wait_until(due);
                lateness.push(due.elapsed());
                let fut = op(i);
                tasks.push(handle.spawn(async move {
                    fut.await;
                    due.elapsed()
                }));
            }
            (tasks, lateness)
        })
        .join()
        .expect("generator thread")
    });
    let mut latencies = rt.block_on(async {
        let mut out = Vec::with_capacity(count);
        for t in tasks {
            out.push(t.await.expect("operation"));
        }
        out
    });
    let cores_used = cpu0
        .zip(process_cpu())
        .map(|(a, b)| (b - a).as_secs_f64() / wall0.elapsed().as_secs_f64());
    latencies.sort();
    lateness.sort();
    OpenLoop {
        latencies,
        lateness,
        steal,
        cores_used,
    }
}

/// Sleeps until `due`. No spinning: on a two-core machine a spinning generator would take
/// CPU from the system it measures. The sleep wakes some tens of microseconds late; that is
/// counted in the latency, and printed as the generator's lateness.
fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// A plain-insert table with the store's pragmas (WAL, `synchronous = FULL`), for baselines
/// that are driven from outside (open loop) through [`plain_insert`].
pub fn plain_insert_table(dir: &Path, name: &str) -> rusqlite::Connection {
    let path = dir.join(format!("baseline-{name}.db"));
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .expect("wal");
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);",
    )
    .expect("schema");
    conn
}

/// One plain insert in its own transaction (see [`plain_insert_table`]).
pub fn plain_insert(conn: &rusqlite::Connection, payload: &str) {
    let tx = conn.unchecked_transaction().expect("begin");
    tx.prepare_cached("INSERT INTO rows (payload) VALUES (?1)")
        .expect("prepare")
        .execute([payload])
        .expect("insert");
    tx.commit().expect("commit");
}

/// A PostgreSQL server for a benchmark: `INTENTKIT_TEST_POSTGRES` (an admin URL) if set, else
/// a throwaway cluster started with `scripts/postgres.sh` and stopped when this is dropped.
pub struct PgServer {
    admin: String,
    cluster: Option<tempfile::TempDir>,
}

impl PgServer {
    /// The server to use (see the type).
    pub fn start() -> Self {
        if let Ok(admin) = std::env::var("INTENTKIT_TEST_POSTGRES") {
            return PgServer {
                admin,
                cluster: None,
            };
        }
        let dir = tempfile::tempdir().expect("cluster dir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("scripts/postgres.sh");
        assert!(
            out.status.success(),
            "starting PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgServer {
            admin: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            cluster: Some(dir),
        }
    }

    /// The admin URL.
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// A new database on it, dropped with the value.
    pub fn database(&self) -> intentkit_core::store::postgres::testing::TestDatabase {
        intentkit_core::store::postgres::testing::TestDatabase::create_on(&self.admin)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(dir) = &self.cluster {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres.sh");
            let _ = std::process::Command::new("bash")
                .arg(script)
                .arg("stop")
                .arg(dir.path())
                .status();
        }
    }
}

/// The deposit request of intent `n` in the lifecycle benches.
pub fn deposit_request(n: usize) -> intentkit_core::IntentRequest {
    use intentkit_core::{
        AccountName, Currency, DepositRequest, IntentRequest, Metadata, MinorUnits,
        PartnerReference, UserId,
    };
    IntentRequest::Deposit(DepositRequest {
        account: AccountName::new("tr-main").expect("account"),
        amount: MinorUnits::new(100_000).expect("amount"),
        currency: Currency::TRY,
        reference: PartnerReference::new(format!("order-{n}")).expect("reference"),
        user_id: UserId::new(format!("user-{n}")).expect("user"),
        user_label: Some("Alex M.".into()),
        metadata: Metadata::default(),
    })
}

/// The three provider signals of a typical approved deposit (intent `n`).
pub fn approved_flow(n: usize) -> [intentkit_core::IntentEvent; 3] {
    use intentkit_core::{
        Cause, IntentEvent, MinorUnits, PayerHandoff, ProviderRef, Signal, Timestamp,
    };
    let provider_intent = format!("0b6e7a52-6c1d-4f0e-9a51-{n:012}");
    [
        IntentEvent::new(
            Signal::HandoffIssued {
                handoff: PayerHandoff::HostedPage {
                    url: format!("https://pay.pientegra.example/d/{provider_intent}.sig"),
                },
                expires_at: Some(Timestamp::from_unix_millis(1_795_000_900_000)),
            },
            Cause::Api,
        )
        .with_provider_ref(ProviderRef::Pientegra {
            intent_id: provider_intent,
            reference_no: Some(format!("D-2026-{n:07}")),
        }),
        IntentEvent::new(Signal::PayerConfirmed, Cause::Webhook)
            .with_event_id(format!("evt-confirm-{n}")),
        IntentEvent::new(
            Signal::Approved {
                amount: MinorUnits::new(100_000).expect("amount"),
                payer: None,
            },
            Cause::Webhook,
        )
        .with_event_id(format!("evt-approve-{n}")),
    ]
}
