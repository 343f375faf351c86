//! `effnet serve`: host this machine's devices for runs driven from another machine, which
//! address them as `ws://HOST:PORT/INDEX` (burn's `RemoteServer` over websockets).

use crate::runtime_args::{DeviceList, parse_devices};
use anyhow::{Result, anyhow, bail};
use effnet_config::{BackendKind, DeviceSpec, RuntimeConfig, format_device_list};
use effnet_train::devices::{compiled_in, devices_for, missing_feature_message};
use std::net::TcpListener;

/// `effnet serve --listen HOST:PORT [--backend B] [--devices 0,1]`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT, e.g. 10.0.0.2:29501; bound exactly (use a private
    /// interface: the websocket protocol is neither encrypted nor authenticated). Port 0 takes a
    /// free port and prints it.
    #[arg(long)]
    pub listen: String,
    /// Backend of the hosted devices: flex, ndarray, wgpu, vulkan or cuda (all but flex need the
    /// cargo feature of the same name).
    #[arg(long, default_value = "flex", value_parser = |s: &str| s.parse::<BackendKind>())]
    pub backend: BackendKind,
    /// Device indices to host, e.g. 0,1. Clients address them by position: the first as
    /// ws://HOST:PORT or ws://HOST:PORT/0, the second as ws://HOST:PORT/1, ...
    #[arg(long, value_parser = parse_devices, default_value = "0")]
    pub devices: DeviceList,
}

/// Binds `listen` (`HOST:PORT`) exactly, with messages that name the flag and the value.
fn bind(listen: &str) -> Result<TcpListener> {
    let port_ok = listen.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        bail!("--listen {listen:?}: expected HOST:PORT, such as 10.0.0.2:29501 or 127.0.0.1:29501");
    }
    TcpListener::bind(listen).map_err(|e| anyhow!("--listen {listen:?}: cannot listen there: {e}"))
}

/// Checks the arguments, binds, prints one line saying what is served where, and serves until
/// Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<()> {
    if !compiled_in(BackendKind::Remote) {
        bail!("effnet serve: {}", missing_feature_message(BackendKind::Remote));
    }
    // burn's server logs to stdout at `info` unless RUST_LOG says otherwise, and at `info` its
    // data service logs a line per tensor it moves between servers (hundreds per step). Default
    // to warnings and errors; RUST_LOG=info brings the rest back.
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: nothing else runs yet (no thread has been started: clap only parsed the
        // arguments), so no other thread can read the environment concurrently.
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    let backend = args.backend;
    if backend == BackendKind::Remote {
        bail!(
            "--backend remote: a server hosts this machine's own devices; choose flex, ndarray, wgpu, vulkan or cuda"
        );
    }
    if !compiled_in(backend) {
        bail!("--backend {backend}: {}", missing_feature_message(backend));
    }
    let list = &args.devices.0;
    if list.iter().any(|d| matches!(d, DeviceSpec::Remote(_))) {
        bail!("--devices {}: a server hosts local devices; give indices such as 0,1", format_device_list(list));
    }
    for (i, d) in list.iter().enumerate() {
        if list[..i].contains(d) {
            bail!("--devices {}: device {d} is listed twice", format_device_list(list));
        }
    }
    let runtime = RuntimeConfig { backend, devices: list.clone(), ..Default::default() };
    let devices = devices_for(&runtime).map_err(|e| anyhow!("{}: {}", e.key, e.reason))?;
    let listener = bind(&args.listen)?;
    let url = format!("ws://{}", listener.local_addr()?);
    let hosted: Vec<String> = list.iter().enumerate().map(|(i, d)| format!("{url}/{i} = {backend} {d}")).collect();
    println!("effnet serve: listening on {url}: {}; Ctrl-C or SIGTERM stops it", hosted.join(", "));
    serve(devices, listener, &url)?;
    eprintln!("effnet serve: stopped");
    Ok(())
}

#[cfg(feature = "remote")]
fn serve(devices: Vec<burn::prelude::Device>, listener: TcpListener, url: &str) -> Result<()> {
    use burn::server::{RemoteServer, WebSocketTransport};
    RemoteServer::new(devices)
        .serve(WebSocketTransport::from_listener(listener))
        .map_err(|e| anyhow!("effnet serve on {url}: {e}"))
}

#[cfg(not(feature = "remote"))]
fn serve(_: Vec<burn::prelude::Device>, _: TcpListener, _: &str) -> Result<()> {
    unreachable!("checked by compiled_in(BackendKind::Remote)")
}
