//! `vfpga-qmp`: the VM tests' QMP client on the command line, for `run-guest.sh` (which
//! attaches its devices with it) and for a person at a running test guest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;
use vfpga_vm_tests::qmp::{Qmp, QmpError};

/// Talks to a QEMU over its QMP socket (-qmp unix:PATH,server=on,wait=off).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "\
Examples:
  Attach a vfpga device once vfpgad accepts its chardev, then start the paused guest:
    vfpga-qmp attach --qmp /tmp/qmp.sock \\
      'vfpga0={\"driver\":\"vhost-user-test-device-pci\",\"id\":\"vfpgadev0\",\"chardev\":\"vfpga0\",\"virtio-id\":21,\"num_vqs\":3,\"config_size\":40}'
  Unplug it (the guest driver fails what is in flight with ENODEV):
    vfpga-qmp execute --qmp /tmp/qmp.sock device_del '{\"id\":\"vfpgadev0\"}' --wait-event DEVICE_DELETED

QEMU serves one QMP client at a time on a socket: run these while no other holds it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Wait until each device's chardev is connected to its socket (the backend
    /// listens), device_add the devices in the order given, then start the guest
    /// (cont). For a QEMU started paused (-S) with the chardevs and no devices.
    Attach {
        /// QEMU's QMP socket.
        #[arg(long, value_name = "PATH")]
        qmp: PathBuf,
        /// Give up after this many seconds of waiting for the chardevs.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
        /// A chardev id and the device_add arguments (a JSON object) of the device on it.
        #[arg(required = true, value_name = "CHARDEV=DEVICE-JSON")]
        devices: Vec<String>,
    },
    /// Run one QMP command and print its return value (JSON).
    Execute {
        /// QEMU's QMP socket.
        #[arg(long, value_name = "PATH")]
        qmp: PathBuf,
        /// The command, e.g. query-chardev or device_del.
        command: String,
        /// Its arguments, a JSON object.
        arguments: Option<String>,
        /// Then wait for this event (e.g. DEVICE_DELETED) and print it too.
        #[arg(long, value_name = "EVENT")]
        wait_event: Option<String>,
        /// Seconds to wait for the event.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        event_timeout: u64,
    },
}

/// How long QEMU may take to create its QMP socket.
const CONNECT: Duration = Duration::from_secs(30);

fn json_object(what: &str, text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(format!("{what} {text}: not a JSON object")),
        Err(e) => Err(format!("{what} {text}: {e}")),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let err = |e: QmpError| e.to_string();
    match cli.command {
        Command::Attach {
            qmp,
            timeout,
            devices,
        } => {
            let devices = devices
                .iter()
                .map(|d| {
                    let (chardev, json) = d
                        .split_once('=')
                        .ok_or_else(|| format!("{d}: give CHARDEV=DEVICE-JSON"))?;
                    Ok((chardev.to_owned(), json_object("device", json)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let mut q = Qmp::connect(&qmp, CONNECT).map_err(err)?;
            q.attach(&devices, Duration::from_secs(timeout), |down| {
                eprintln!(
                    "[vfpga] waiting for the backends to listen (chardevs {})",
                    down.join(", ")
                );
            })
            .map_err(err)
        }
        Command::Execute {
            qmp,
            command,
            arguments,
            wait_event,
            event_timeout,
        } => {
            let arguments = arguments
                .map(|a| json_object("arguments", &a))
                .transpose()?;
            let mut q = Qmp::connect(&qmp, CONNECT).map_err(err)?;
            let r = q.execute(&command, arguments).map_err(err)?;
            println!("{r}");
            if let Some(e) = wait_event {
                let ev = q
                    .wait_event(&e, Duration::from_secs(event_timeout))
                    .map_err(err)?;
                println!("{ev}");
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfpga-qmp: {e}");
            ExitCode::FAILURE
        }
    }
}
