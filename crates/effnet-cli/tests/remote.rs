//! Multi-node training through burn's `remote` backend, on loopback (cargo feature `remote`):
//! two `effnet serve` processes each host one flex device, and a tiny run trains data-parallel
//! over `ws://…` devices with burn-train's `multi` strategy.
//!
//! With BatchNorm held at its running statistics every image is treated independently, so the
//! two-server run must follow the one-local-device loss curve (same seed, same global batch) to
//! float rounding: that checks the gradient scaling, the batch split and the step count across
//! processes. Remote flex devices run burn's generic ops where the local one runs effnet's CPU
//! kernels, so "float rounding" includes the two implementations' differences.

// The tiny run's [model]/[data] and the flex-RNG turn-taking, shared with effnet-train's tests.
use effnet_test_support as common;

use burn::module::{Flag, Module, ModuleMapper, Param};
use effnet_config::EffnetConfig;
use effnet_train::progress::EpochRow;
use effnet_train::trainer::{ConfigSource, read_metrics, train_with};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Per-epoch train and validation loss, relative difference allowed between two remote servers
/// and one local device. Measured: equal to the 7 digits `metrics.csv` keeps; with the devices'
/// gradients summed instead of averaged (an injected bug) the first epoch's train loss is 3.8e-2
/// off.
const REL_TOL: f64 = 1e-4;

/// Training images of the tiny run (of digits' 1,438) and validation images (of 359): 4 steps
/// of 128 per epoch keep the remote run to seconds.
const TRAIN_IMAGES: usize = 512;
const VALID_IMAGES: usize = 256;

fn effnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_effnet"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("effnet-remote-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One `effnet serve` process; killed when dropped, so a failing test leaves no server behind.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `effnet serve --listen 127.0.0.1:0` (a free port, which it prints) and waits until
    /// it accepts connections.
    fn start(dir: &Path, name: &str) -> Server {
        let log = dir.join(format!("{name}.log"));
        let child = effnet()
            .args(["serve", "--listen", "127.0.0.1:0", "--backend", "flex", "--devices", "0"])
            .stdout(Stdio::from(File::create(&log).unwrap()))
            .stderr(Stdio::from(File::create(dir.join(format!("{name}.err"))).unwrap()))
            .spawn()
            .expect("start effnet serve");
        let mut server = Server { child, url: String::new(), log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(rest) = text.lines().find_map(|l| l.strip_prefix("effnet serve: listening on ")) {
                server.url = rest.split(':').take(3).collect::<Vec<_>>().join(":");
                break;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("effnet serve exited ({status}): {text}{}", server.stderr());
            }
            assert!(Instant::now() < deadline, "effnet serve printed no address in 60 s: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The line is printed once the socket is bound; check that it takes connections.
        let addr = server.url.trim_start_matches("ws://");
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "effnet serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `n` records of a cifar-100-binary file.
fn head(src: &Path, dst: &Path, n: usize) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dst, &bytes[..n * 3074]).unwrap();
}

/// A smaller copy of the embedded digits dataset in `dir`.
fn small_digits(dir: &Path) -> PathBuf {
    let digits = common::digits();
    let out = dir.join("digits");
    std::fs::create_dir_all(&out).unwrap();
    head(&digits.join("train.bin"), &out.join("train.bin"), TRAIN_IMAGES);
    head(&digits.join("test.bin"), &out.join("test.bin"), VALID_IMAGES);
    for f in ["fine_label_names.txt", "coarse_label_names.txt"] {
        std::fs::copy(digits.join(f), out.join(f)).unwrap();
    }
    out
}

/// The tiny deterministic run of effnet-train's tests on `data`, written to `dir/name.toml`.
fn tiny(dir: &Path, name: &str, data: &Path, epochs: usize, runtime: &str, init: Option<&Path>) -> ConfigSource {
    let text = format!(
        r#"
{common}[train]
epochs = {epochs}
batch_size = 128
seed = 7
{init}
{optim_and_schedule}[runtime]
{runtime}
"#,
        optim_and_schedule = common::tiny_optim_and_schedule(),
        common = common::tiny_model_and_data_on(data),
        init = init.map_or(String::new(), |p| format!("init_weights = {:?}", p.display().to_string())),
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, &text).unwrap();
    ConfigSource { config: EffnetConfig::from_toml_str(&text, &file).unwrap(), file }
}

/// Disables every module flag: BatchNorm then normalises with its running statistics.
struct HoldBatchNorm;

impl ModuleMapper for HoldBatchNorm {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

fn rows(dir: &Path, split: &str) -> Vec<EpochRow> {
    read_metrics(&dir.join("metrics.csv")).into_iter().filter(|r| r.split == split).collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs())
}

fn eval_json(config: &Path, checkpoint: &Path, runtime: &[&str]) -> serde_json::Value {
    let o = effnet()
        .args(["eval", "--config", config.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap(), "--json"])
        .args(runtime)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn two_remote_servers_follow_the_one_device_loss_curve() {
    let _serial = common::serial();
    let dir = tmp("train");
    let data = small_digits(&dir);

    // Held BatchNorm needs trained running statistics: two local epochs on all of digits first.
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits");
    let pre = dir.join("pretrain");
    train_with(&tiny(&dir, "pre", &digits, 2, "devices = [0]", None), &pre, false, &|net| net).unwrap();
    let init = pre.join("latest.bpk");

    let epochs = 2;
    let hold = |net: effnet_model::EfficientNet| net.map(&mut HoldBatchNorm);
    let local = dir.join("local");
    let t = Instant::now();
    train_with(&tiny(&dir, "local", &data, epochs, "devices = [0]", Some(&init)), &local, false, &hold).unwrap();
    let local_s = t.elapsed().as_secs_f64();
    let (servers, remote_src, remote, remote_s) = train_on_servers(&dir, &data, &init, epochs);
    eprintln!("wall: 1 local flex device {local_s:.1} s, 2 remote flex servers {remote_s:.1} s");

    for split in ["train", "valid"] {
        let (a, b) = (rows(&local, split), rows(&remote, split));
        assert_eq!((a.len(), b.len()), (epochs, epochs), "{a:?} {b:?}");
        for (x, y) in a.iter().zip(&b) {
            eprintln!(
                "{split} epoch {}: loss {:.6} (1 local device) / {:.6} (2 remote servers), rel {:.2e}; {:.0} / {:.0} images/s",
                x.epoch,
                x.loss,
                y.loss,
                rel(x.loss, y.loss),
                x.images_per_sec,
                y.images_per_sec
            );
            assert!(rel(x.loss, y.loss) < REL_TOL, "{split} epoch {}: loss {} vs {}", x.epoch, x.loss, y.loss);
            // Same number of optimizer steps: the same LR at the end of each epoch.
            assert_eq!(x.lr, y.lr, "{split} epoch {}", x.epoch);
        }
    }
    // The run learns, so the curves compare training, not a network stuck at chance: the train
    // loss falls over the two epochs and the validation loss ends below chance's ln 10 by 3 %.
    // (Measured across kernel changes, which move the pre-trained init: train −2.2 … −8.2 %,
    // final validation 2.17–2.21; the validation loss of 4 steps on held BatchNorm does not fall
    // reliably from epoch to epoch, −5.9 … −0.4 %, so it is not compared between epochs.)
    let (t, v) = (rows(&remote, "train"), rows(&remote, "valid"));
    let chance = 10f64.ln();
    assert!(t[1].loss < 0.99 * t[0].loss && v[1].loss < 0.97 * chance, "the remote run did not learn: {t:?} {v:?}");

    // Inference on a remote device through the CLI gives the local device's numbers.
    let weights = remote.join("latest.bpk");
    // `--devices ws://…` alone implies `--backend remote`.
    let l = eval_json(&remote_src.file, &weights, &["--backend", "flex", "--devices", "0"]);
    let r = eval_json(&remote_src.file, &weights, &["--devices", &servers[1].url]);
    assert_eq!((l["images"].as_u64(), r["images"].as_u64()), (Some(VALID_IMAGES as u64), Some(VALID_IMAGES as u64)));
    let (a, b) = (l["loss"].as_f64().unwrap(), r["loss"].as_f64().unwrap());
    assert!(rel(a, b) < REL_TOL, "eval loss {a} (local) vs {b} (remote)");
    assert_eq!(l["top1"], r["top1"]);

    // A server stops cleanly on SIGTERM.
    let [a, b] = servers;
    drop(b);
    let err_log = a.log.with_extension("err");
    let status = a.terminate();
    let err = std::fs::read_to_string(err_log).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("effnet serve: stopped"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tiny run with BatchNorm held on two fresh `effnet serve` processes: (the servers, its
/// config, its run directory, seconds).
///
/// burn-remote 0.22.1 now and then loses the race between a tensor's transfer and the op that
/// uses it: a server's session thread panics with "Should have handle for tensor" (burn-ir's
/// handle container, under burn-router's interpreter; seen once in about seven runs here) and the
/// driver then waits forever. Such a run is abandoned and retried once on new servers; that
/// panic twice, any other failure, or a run over 5 minutes fails the test. (The run's own stall
/// watchdog is off: an abandoned run's would end the whole test process.)
fn train_on_servers(dir: &Path, data: &Path, init: &Path, epochs: usize) -> ([Server; 2], ConfigSource, PathBuf, f64) {
    const LOST_TENSOR: &str = "Should have handle for tensor";
    for attempt in 0..2 {
        let servers = [Server::start(dir, &format!("a{attempt}")), Server::start(dir, &format!("b{attempt}"))];
        let runtime = format!(
            "backend = \"remote\"\ndevices = [\"{}\", \"{}/0\"]\nstall_timeout_s = 0",
            servers[0].url, servers[1].url
        );
        let name = format!("remote{attempt}");
        let (src, run_dir) = (tiny(dir, &name, data, epochs, &runtime, Some(init)), dir.join(&name));
        let (job_src, job_dir) = (src.clone(), run_dir.clone());
        let t = Instant::now();
        let job = std::thread::spawn(move || {
            let hold = |net: effnet_model::EfficientNet| net.map(&mut HoldBatchNorm);
            train_with(&job_src, &job_dir, false, &hold).map(|_| ()).map_err(|e| e.to_string())
        });
        loop {
            if job.is_finished() {
                job.join().unwrap().unwrap_or_else(|e| panic!("remote run: {e}"));
                return (servers, src, run_dir, t.elapsed().as_secs_f64());
            }
            let logs = format!("{}{}", servers[0].stderr(), servers[1].stderr());
            if logs.contains(LOST_TENSOR) {
                assert_eq!(attempt, 0, "burn-remote lost a tensor again: {logs}");
                eprintln!("burn-remote lost a tensor (\"{LOST_TENSOR}\"); retrying on new servers");
                break; // the servers are killed on drop; the abandoned run's connections fail
            }
            assert!(t.elapsed() < Duration::from_secs(300), "the remote run took over 5 minutes: {logs}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    unreachable!("the second attempt returns or fails")
}

/// A failed command: exit code 1, a one-line `error:` message, no panic.
fn assert_clean_failure(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    err
}

#[test]
fn serve_and_remote_devices_fail_cleanly() {
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let err = assert_clean_failure(&effnet().args(["serve", "--listen", &listen]).output().unwrap());
    assert!(err.starts_with(&format!("error: --listen \"{listen}\": cannot listen there: ")), "{err}");
    let err = assert_clean_failure(&effnet().args(["serve", "--listen", "127.0.0.1"]).output().unwrap());
    assert!(err.contains("expected HOST:PORT"), "{err}");
    let err =
        assert_clean_failure(&effnet().args(["serve", "--listen", "no-such-host.invalid:29501"]).output().unwrap());
    assert!(err.starts_with("error: --listen \"no-such-host.invalid:29501\": cannot listen there"), "{err}");
    let err = assert_clean_failure(
        &effnet().args(["serve", "--listen", "127.0.0.1:0", "--backend", "remote"]).output().unwrap(),
    );
    assert!(err.contains("a server hosts this machine's own devices"), "{err}");

    // Nothing listens on the port of a closed listener: the client gives up after burn's retries
    // (about 16 s) with a message naming the address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{closed}");
    let dir = tmp("errors");
    // Neither file is read: the device is connected first.
    let (weights, input, output) = (dir.join("w.bpk"), dir.join("x.npy"), dir.join("y.npy"));
    let o = effnet()
        .args(["forward", "--variant", "b0", "--weights", weights.to_str().unwrap(), "--devices", &url])
        .args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .output()
        .unwrap();
    let err = assert_clean_failure(&o);
    assert!(err.contains(&format!("cannot connect to device 0 of the server at {url}")), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_training_run_on_a_silent_server_stops_at_the_stall_timeout() {
    // A server that accepts connections and never answers: burn-remote's client then waits for
    // ever (as the driver does when a real server's session dies mid-run). The watchdog ends the
    // run after `stall_timeout_s` with a message and exit code 1.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let dir = tmp("stall");
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits");
    let runtime = format!("backend = \"remote\"\ndevices = [\"ws://127.0.0.1:{port}\"]\nstall_timeout_s = 3");
    let src = tiny(&dir, "stall", &digits, 1, &runtime, None);
    let run_dir = dir.join("run");
    let t = Instant::now();
    let mut child = effnet()
        .args(["train", "--config", src.file.to_str().unwrap(), "--run-dir", run_dir.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("`effnet train` still waiting on the silent server after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let waited = t.elapsed();
    let err = assert_clean_failure(&o);
    assert!(
        err.starts_with("error: no training or validation step finished in the last 3 s (runtime.stall_timeout_s = 3)"),
        "{err}"
    );
    assert!(err.contains("A remote server may have failed") && err.contains("No checkpoint was written yet"), "{err}");
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(60), "stopped after {waited:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
