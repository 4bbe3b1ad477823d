//! Real nisshi brokers for integration tests.
//!
//! Each broker is a `nisshi broker` process on a free 127.0.0.1 port with its own temporary
//! directory (working directory, log, certificates, sqlite file). nisshi is not started
//! directly but through a small `sh` wrapper whose stdin is a pipe held by this process: when
//! the pipe closes (the [`Broker`] is dropped, or the test process exits or is killed, which
//! is the only way a broker in a `static` such as [`Broker::shared`] ever goes) the wrapper
//! sends nisshi SIGTERM, then SIGKILL after 5 s, and removes the broker's directory. So
//! `cargo test` leaves no stray brokers or directories behind. A broker that exits by itself
//! keeps its directory, for its log.
//!
//! Set `NISSHI_LOG` (a `RUST_LOG` value) to make the brokers log more; each broker's log is
//! `nisshi.log` in its directory, and its tail is printed when a broker fails to start.

use std::{
    env, fs,
    io::{Read, Seek, SeekFrom},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    types::RDKafkaErrorCode,
    ClientConfig, Message, Offset, TopicPartitionList,
};
use tempfile::TempDir;

/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of each metadata or watermark request made by the helpers here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `consume_all` fails when no message arrives for this long while some are still missing.
const CONSUME_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `"$@"` (nisshi) in the background, stops it (SIGTERM, SIGKILL after 5 s) when stdin
/// reaches end of file, and exits with its status. `NISSHI_HARNESS_CLEANUP`, when set, is a
/// directory removed after such a stop (not when nisshi exits by itself: its log is kept).
const WRAPPER: &str = r#"
dir=${NISSHI_HARNESS_CLEANUP:-}
exec 3<&0
"$@" 3<&- </dev/null &
pid=$!
(
    read -r _ <&3
    if [ -n "$dir" ]; then : >"$dir/.stopping"; fi
    kill -TERM "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
    if [ -n "$dir" ]; then rm -rf "$dir"; fi
) &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
if [ -n "$dir" ] && [ -e "$dir/.stopping" ]; then wait "$watcher"; else kill "$watcher" 2>/dev/null; fi
exit "$status"
"#;

/// The nisshi binary: `NISSHI_BIN`, else `nisshi` on `PATH`, else `$CARGO_HOME/bin/nisshi`.
pub fn nisshi_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = env::var_os("NISSHI_BIN").filter(|bin| !bin.is_empty()) {
            let bin = PathBuf::from(bin);
            assert!(
                is_executable(&bin),
                "NISSHI_BIN={} is not an executable: run scripts/broker install",
                bin.display()
            );
            return bin;
        }
        let on_path = env::var_os("PATH")
            .into_iter()
            .flat_map(|path| env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join("nisshi"));
        let cargo_home = env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
            .map(|home| home.join("bin").join("nisshi"));
        on_path
            .chain(cargo_home)
            .find(|bin| is_executable(bin))
            .unwrap_or_else(|| panic!("nisshi not found: run scripts/broker install"))
    })
    .clone()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A running nisshi broker, stopped when dropped.
pub struct Broker {
    // Declared before `dir`, so the process stops before its directory is removed.
    process: Process,
    port: u16,
    dir: TempDir,
}

impl Broker {
    /// A broker with memory storage on a free loopback port, ready to serve requests.
    pub fn plain() -> Broker {
        let dir = tempdir();
        let (process, port) = launch(dir.path(), None, true, |port| {
            let mut args = listener_args(port);
            args.extend(["--storage-engine".into(), "memory://nisshi/".into()]);
            args
        });
        let broker = Broker { process, port, dir };
        broker.wait_for_metadata(&[]);
        broker
    }

    /// A broker with sqlite storage on a free loopback port: what it acknowledged survives
    /// [`restart`](Self::restart), like a real cluster's disks.
    pub fn durable() -> Broker {
        let dir = tempdir();
        let (process, port) = launch(dir.path(), None, false, durable_args);
        let broker = Broker { process, port, dir };
        broker.wait_for_metadata(&[]);
        broker
    }

    /// Stops the broker at once, like a crash (SIGKILL: no graceful shutdown that goes on
    /// serving), keeping its storage.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the broker again on the same port and storage (after [`stop`](Self::stop)).
    pub fn restart(&mut self) {
        self.process.stop();
        let (process, port) = launch(self.dir.path(), Some(self.port), false, durable_args);
        assert_eq!(port, self.port, "the broker came back on another port");
        self.process = process;
        self.wait_for_metadata(&[]);
    }

    /// One plain broker per test binary, started on first use. It runs until the test process
    /// exits. Tests sharing it should use topic names of their own.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(Self::plain)
    }

    /// A broker that requires SASL SCRAM-SHA-512 over TLS (`security.protocol=SASL_SSL`), with
    /// one user, sqlite storage and a server certificate for `localhost` and `127.0.0.1`
    /// signed by a fresh CA (`ca_path`).
    pub fn secured(user: &str, password: &str) -> SecureBroker {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let storage = || {
            [
                "--storage-engine".to_string(),
                "sqlite://nisshi.db".to_string(),
            ]
        };

        // 1. Without authentication (and in plaintext), so that the user can be created.
        let (mut setup, port) = launch(dir.path(), None, false, |port| {
            let mut args = listener_args(port);
            args.extend(storage());
            args
        });
        create_user(dir.path(), port, user, password);
        setup.stop();
        drop(setup);

        // 2. The same storage with authentication and TLS. Same port: nothing else should grab
        // it in the moment between, but if something does, another one is fine too.
        let (process, port) = launch(dir.path(), Some(port), true, |port| {
            let mut args = listener_args(port);
            args.extend(storage());
            args.extend([
                "--authentication".into(),
                "--cert".into(),
                path_arg(&pki.cert),
                "--key".into(),
                path_arg(&pki.key),
            ]);
            args
        });

        SecureBroker {
            broker: Broker { process, port, dir },
            ca_path: pki.ca,
            other_ca_path: pki.other_ca,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// `127.0.0.1:PORT`, the address the broker listens on and advertises.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's temporary directory (its working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    fn wait_for_metadata(&self, extra: &[(&str, &str)]) {
        let consumer: BaseConsumer = client_config(&self.bootstrap(), extra)
            .create()
            .expect("create a metadata client");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match consumer.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(metadata) if !metadata.brokers().is_empty() => return,
                result if Instant::now() >= deadline => panic!(
                    "nisshi on {} does not answer metadata requests: {:?}\n{}",
                    self.bootstrap(),
                    result.map(|m| m.brokers().len()),
                    log_tail(&self.process.log)
                ),
                _ => thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// A broker that requires SASL_SSL with SCRAM-SHA-512; see [`Broker::secured`].
pub struct SecureBroker {
    pub broker: Broker,
    /// PEM of the CA that signed the broker's certificate.
    pub ca_path: PathBuf,
    /// PEM of another CA, which did not sign the broker's certificate.
    pub other_ca_path: PathBuf,
    pub user: String,
    pub password: String,
}

impl SecureBroker {
    /// `localhost:PORT`: the certificate names both `localhost` and `127.0.0.1`, so hostname
    /// verification passes with either (nisshi advertises `127.0.0.1`).
    pub fn bootstrap(&self) -> String {
        format!("localhost:{}", self.broker.port)
    }

    /// Client settings for this broker with the right password and CA.
    pub fn client_settings(&self) -> Vec<(&'static str, String)> {
        self.client_settings_with(&self.password, &self.ca_path)
    }

    /// Client settings for this broker with the given password and CA file.
    pub fn client_settings_with(&self, password: &str, ca: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "SASL_SSL".into()),
            ("sasl.mechanism", "SCRAM-SHA-512".into()),
            ("sasl.username", self.user.clone()),
            ("sasl.password", password.into()),
            ("ssl.ca.location", ca.display().to_string()),
            ("ssl.endpoint.identification.algorithm", "https".into()),
        ]
    }
}

/// Converts settings from [`SecureBroker::client_settings`] into the `extra` argument of
/// [`consume_all`] and [`client_config`].
pub fn as_extra<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect()
}

/// A client configuration for `bootstrap` with `extra` settings on top.
pub fn client_config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}

/// A record's key and payload.
pub type Record = (Option<Vec<u8>>, Vec<u8>);

/// Reads every message of every partition of `topic`, from the beginning up to the high
/// watermark at the time of the call, without a consumer group. Returns `(key, payload)`
/// ordered by partition, then offset (a null payload is returned empty). Panics on failure.
pub fn consume_all(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> Vec<Record> {
    // librdkafka refuses assign() without a group.id; the group is never joined (no
    // subscribe) and nothing is committed.
    static READERS: AtomicUsize = AtomicUsize::new(0);
    let group = format!(
        "consume-all-{}-{}",
        std::process::id(),
        READERS.fetch_add(1, Ordering::Relaxed)
    );
    let mut config = client_config(bootstrap, &[]);
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config
        .create()
        .unwrap_or_else(|e| panic!("consume_all({topic}): create consumer: {e}"));

    let partitions = partitions_of(&consumer, topic);
    let mut ends = Vec::new(); // (partition, high watermark)
    let mut next = Vec::new(); // (partition, next offset to read)
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .unwrap_or_else(|e| panic!("consume_all({topic}): watermarks of {partition}: {e}"));
        if high > low {
            ends.push((partition, high));
            next.push((partition, low));
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .expect("add partition");
        }
    }
    if ends.is_empty() {
        return Vec::new();
    }
    consumer
        .assign(&assignment)
        .unwrap_or_else(|e| panic!("consume_all({topic}): assign: {e}"));

    let mut records: Vec<(i32, i64, Record)> = Vec::new();
    let mut last_progress = Instant::now();
    let done = |next: &[(i32, i64)]| {
        next.iter()
            .zip(&ends)
            .all(|(&(_, next), &(_, high))| next >= high)
    };
    while !done(&next) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                let slot = next.iter_mut().find(|(p, _)| *p == partition);
                let high = ends.iter().find(|(p, _)| *p == partition).map(|e| e.1);
                if let (Some(slot), Some(high)) = (slot, high) {
                    if offset < high && offset >= slot.1 {
                        let key = message.key().map(<[u8]>::to_vec);
                        let payload = message.payload().unwrap_or_default().to_vec();
                        records.push((partition, offset, (key, payload)));
                    }
                    slot.1 = slot.1.max(offset + 1);
                    last_progress = Instant::now();
                }
            }
            // Transaction markers take offsets but are never delivered, so the position
            // (which moves past them) says where a partition's reading stands.
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                if let Ok(positions) = consumer.position() {
                    for (partition, position) in next.iter_mut() {
                        if let Some(Offset::Offset(at)) = positions
                            .find_partition(topic, *partition)
                            .map(|element| element.offset())
                        {
                            if at > *position {
                                *position = at;
                                last_progress = Instant::now();
                            }
                        }
                    }
                }
            }
            Some(Err(e)) => panic!("consume_all({topic}) from {bootstrap}: {e}"),
        }
        if last_progress.elapsed() > CONSUME_IDLE_TIMEOUT {
            panic!(
                "consume_all({topic}) from {bootstrap}: stalled for {CONSUME_IDLE_TIMEOUT:?}: \
                 (partition, next offset) {next:?}, (partition, high watermark) {ends:?}, \
                 {} records read",
                records.len()
            );
        }
    }
    records.sort_by_key(|&(partition, offset, ..)| (partition, offset));
    records.into_iter().map(|(_, _, record)| record).collect()
}

/// Creates `topic` with `partitions` partitions on a plaintext broker, and waits until the
/// broker's metadata shows them all.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with(bootstrap, topic, partitions, &[]);
}

/// As [`create_topic`], with extra client settings (for example a secured broker's).
pub fn create_topic_with(bootstrap: &str, topic: &str, partitions: i32, extra: &[(&str, &str)]) {
    let config = client_config(bootstrap, extra);
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .unwrap_or_else(|e| panic!("create_topic({topic}): admin client: {e}"));
    let owned_topic = topic.to_owned();
    // The admin future is driven by librdkafka's own thread; block on it in a thread of our
    // own so that this works inside and outside a tokio runtime alike.
    let results = thread::spawn(move || {
        let new_topic = NewTopic::new(&owned_topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .operation_timeout(Some(REQUEST_TIMEOUT));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(admin.create_topics([&new_topic], &options))
    })
    .join()
    .expect("create_topic thread")
    .unwrap_or_else(|e| panic!("create_topic({topic}) on {bootstrap}: {e}"));
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => panic!("create_topic({name}) on {bootstrap}: {code:?}"),
        }
    }

    let consumer: BaseConsumer = client_config(bootstrap, extra)
        .create()
        .expect("metadata client");
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        let seen = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .ok()
            .and_then(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
            });
        match seen {
            Some(n) if n == partitions as usize => return,
            _ if Instant::now() >= deadline => {
                panic!(
                    "create_topic({topic}): metadata shows {seen:?} partitions, not {partitions}"
                )
            }
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The partitions of `topic`, from metadata; panics if it does not exist.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("metadata has no topic {topic}"));
    if let Some(error) = found.error() {
        panic!("metadata of {topic}: {:?}", RDKafkaErrorCode::from(error));
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    partitions
}

// ---------------------------------------------------------------------------------------------
// Processes

/// The wrapper process around one nisshi process.
struct Process {
    child: Child,
    /// Closing this (dropping it) stops nisshi.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Process {
    fn spawn(dir: &Path, args: &[String], remove_dir_when_stopped: bool) -> Process {
        let log = dir.join("nisshi.log");
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open nisshi.log");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("nisshi-harness") // $0 of the wrapper; "$@" is nisshi and its arguments
            .arg(nisshi_bin())
            .args(args)
            // nisshi reads a `.env` file from its working directory.
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file)
            // Kafka's 3 s wait for more members before a new group's first assignment would delay
            // every loader start in these tests (the job lease joins a group of its own).
            .env("GROUP_INITIAL_REBALANCE_DELAY", "0s")
            .env_remove("RUST_LOG");
        if let Some(level) = env::var_os("NISSHI_LOG") {
            command.env("RUST_LOG", level);
        }
        if remove_dir_when_stopped {
            command.env("NISSHI_HARNESS_CLEANUP", dir);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn nisshi via sh: {e}"));
        let stdin = child.stdin.take();
        Process { child, stdin, log }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills nisshi (the wrapper's child) with SIGKILL, then lets [`stop`](Self::stop) wait for
    /// the wrapper, which ends with it.
    fn kill(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        self.stop();
    }

    /// Stops nisshi (SIGTERM, then SIGKILL after 5 s) and waits for it.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("nisshi-")
        .tempdir()
        .expect("create a temporary directory")
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

fn durable_args(port: u16) -> Vec<String> {
    let mut args = listener_args(port);
    args.extend(["--storage-engine".into(), "sqlite://nisshi.db".into()]);
    args
}

fn listener_args(port: u16) -> Vec<String> {
    // nisshi binds exactly the listener address: 127.0.0.1 (a host name such as `localhost`
    // would make it listen on every interface). Clients connect to the advertised address,
    // so that is 127.0.0.1 too, never `localhost`, which may resolve to ::1 first.
    let url = format!("tcp://127.0.0.1:{port}");
    vec![
        "broker".into(),
        "--listener-url".into(),
        url.clone(),
        "--advertised-listener-url".into(),
        url,
        // A consumer group's first rebalance does not wait 3 s for more members.
        "--group-initial-rebalance-delay".into(),
        "0s".into(),
    ]
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port")
}

/// Starts nisshi with `args(port)` in `dir` and waits until it accepts connections. The port
/// is `port`, or a free one; if it turns out to be taken, another free one is tried.
fn launch(
    dir: &Path,
    port: Option<u16>,
    remove_dir_when_stopped: bool,
    args: impl Fn(u16) -> Vec<String>,
) -> (Process, u16) {
    let mut port = port.unwrap_or_else(free_port);
    for attempt in 1.. {
        let mut process = Process::spawn(dir, &args(port), remove_dir_when_stopped);
        match wait_until_listening(&mut process, port) {
            Ok(()) => return (process, port),
            Err(why) => {
                let tail = log_tail(&process.log);
                if attempt < 5 && tail.contains("already in use") {
                    drop(process);
                    port = free_port();
                    continue;
                }
                panic!("nisshi did not start on 127.0.0.1:{port}: {why}\n{tail}");
            }
        }
    }
    unreachable!()
}

fn wait_until_listening(process: &mut Process, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            return Err(format!("it exited with {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // Something listens; make sure it is this nisshi, not another process that had
            // the port (nisshi then exits at once).
            thread::sleep(Duration::from_millis(50));
            return match process.exited() {
                Some(status) => Err(format!("it exited with {status}")),
                None => Ok(()),
            };
        }
        if Instant::now() >= deadline {
            return Err(format!("no connection after {START_TIMEOUT:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(log) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(4000)));
        let _ = file.read_to_string(&mut text);
    }
    format!("--- {} (tail) ---\n{text}", log.display())
}

/// Runs `nisshi user create` against the plaintext broker on `port`.
fn create_user(dir: &Path, port: u16, user: &str, password: &str) {
    let output = Command::new(nisshi_bin())
        .args(["user", "create", user, password, "--mechanism", "scram512"])
        .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run nisshi user create");
    assert!(
        output.status.success(),
        "nisshi user create {user} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// PEM files: the broker's certificate and key, the CA that signed it, and an unrelated CA.
struct Pki {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    other_ca: PathBuf,
}

impl Pki {
    fn generate(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };

        fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
            let key = KeyPair::generate().expect("CA key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = params.self_signed(&key).expect("self-sign CA");
            (cert.pem(), Issuer::new(params, key))
        }

        let (ca_pem, issuer) = ca("loader-producer test CA");
        let (other_ca_pem, _) = ca("loader-producer unrelated CA");

        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).expect("sign server cert");

        let pki = Pki {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
        };
        fs::write(&pki.cert, cert.pem()).expect("write server.pem");
        fs::write(&pki.key, key.serialize_pem()).expect("write server.key");
        fs::write(&pki.ca, ca_pem).expect("write ca.pem");
        fs::write(&pki.other_ca, other_ca_pem).expect("write other-ca.pem");
        pki
    }
}

/// Whether `topic` exists on the broker (with partitions).
pub fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = match client_config(bootstrap, &[]).create() {
        Ok(c) => c,
        Err(_) => return false,
    };
    consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .ok()
        .and_then(|md| {
            md.topics()
                .iter()
                .find(|t| t.name() == topic)
                .map(|t| t.error().is_none() && !t.partitions().is_empty())
        })
        .unwrap_or(false)
}

/// Messages in `topic` (the sum of its partitions' end offsets), 0 while it does not exist:
/// how far a load has got, without reading it.
pub fn message_count(bootstrap: &str, topic: &str) -> i64 {
    let Ok(consumer) = client_config(bootstrap, &[]).create::<BaseConsumer>() else {
        return 0;
    };
    let Ok(md) = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT) else {
        return 0;
    };
    let Some(t) = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
    else {
        return 0;
    };
    t.partitions()
        .iter()
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
                .ok()
        })
        .map(|(low, high)| high - low)
        .sum()
}

/// Members and state ("Stable", "PreparingRebalance", …) of each consumer group whose name
/// starts with `prefix` (empty when the broker cannot be asked).
pub fn group_members(bootstrap: &str, prefix: &str) -> Vec<(String, usize, String)> {
    let Ok(consumer) = client_config(bootstrap, &[]).create::<BaseConsumer>() else {
        return Vec::new();
    };
    let Ok(list) = consumer.fetch_group_list(None, REQUEST_TIMEOUT) else {
        return Vec::new();
    };
    list.groups()
        .iter()
        .filter(|g| g.name().starts_with(prefix))
        .map(|g| {
            (
                g.name().to_string(),
                g.members().len(),
                g.state().to_string(),
            )
        })
        .collect()
}

/// Publishes one message (no key) to `topic` and waits for its acknowledgement.
pub fn produce(bootstrap: &str, topic: &str, payload: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = client_config(bootstrap, &[]).create().expect("producer");
    producer
        .send(BaseRecord::<(), str>::to(topic).payload(payload))
        .expect("queue the message");
    producer
        .flush(REQUEST_TIMEOUT)
        .expect("the message is acknowledged");
}

/// Publishes `records` (key, payload) to `topic` in order with one producer, and waits until
/// the broker has acknowledged them all. Panics on failure.
pub fn produce_all(bootstrap: &str, topic: &str, records: &[Record]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = client_config(bootstrap, &[]).create().expect("producer");
    for (key, payload) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(payload.as_slice());
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        // A full local queue empties as the broker acknowledges: serve its events meanwhile.
        while let Err((e, back)) = producer.send(record) {
            match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(50));
                    record = back;
                }
                e => panic!("produce_all({topic}): {e}"),
            }
        }
    }
    producer
        .flush(REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("produce_all({topic}): flush: {e}"));
}
