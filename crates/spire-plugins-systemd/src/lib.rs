//! WorkloadAttestor `systemd` of spire-agent, in its own crate so the core builds without a
//! D-Bus client: the caller's unit is asked of systemd on the system bus
//! (`org.freedesktop.systemd1.Manager.GetUnitByPID`, then the unit's `Id` and
//! `FragmentPath`), giving SPIRE's selectors `id:<unit>` and `fragment_path:<path>`. The bus
//! is `DBUS_SYSTEM_BUS_ADDRESS`, else `/var/run/dbus/system_bus_socket`; one connection is
//! kept and replaced when it fails. The plugin takes no configuration.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use spire_plugin::{Code, PluginError, PluginResult, WorkloadAttestor};
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant};

/// The plugin's name in `agent.conf`.
pub const PLUGIN_NAME: &str = "systemd";

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
/// The longest one D-Bus exchange (connecting, or one call) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The `systemd` WorkloadAttestor.
#[derive(Debug, Default)]
pub struct SystemdAttestor {
    /// A bus address in place of the system bus (tests).
    address: Option<String>,
    conn: tokio::sync::Mutex<Option<zbus::Connection>>,
}

/// What systemd says of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInfo {
    /// `Id`, such as `demo.service`.
    pub id: String,
    /// `FragmentPath`, the unit file (empty for units without one).
    pub fragment_path: String,
}

impl SystemdAttestor {
    /// The plugin (it connects on first use).
    pub fn new() -> SystemdAttestor {
        SystemdAttestor::default()
    }

    /// The plugin talking to the bus at `address` (a D-Bus address such as
    /// `unix:path=/run/dbus/system_bus_socket`) instead of the system bus.
    pub fn with_address(address: impl Into<String>) -> SystemdAttestor {
        SystemdAttestor {
            address: Some(address.into()),
            ..SystemdAttestor::default()
        }
    }

    async fn connect(&self) -> zbus::Result<zbus::Connection> {
        let builder = match &self.address {
            Some(a) => zbus::connection::Builder::address(a.as_str()),
            None => zbus::connection::Builder::system(),
        };
        builder.build().await
    }

    async fn connection(&self) -> PluginResult<zbus::Connection> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = bounded(self.connect())
            .await
            .map_err(|e| internal(format!("failed to open dbus connection: {e}")))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// The unit `pid` belongs to. A connection found broken (the bus restarted) is
    /// replaced and the question asked once more on the new one, as godbus reconnects
    /// before use.
    pub async fn unit_info(&self, pid: u32) -> PluginResult<UnitInfo> {
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let failed = match unit_info(&conn, pid).await {
                Ok(info) => return Ok(info),
                Err(f) => f,
            };
            if failed.dropped {
                // Forget this connection, unless another caller has already replaced it.
                let mut guard = self.conn.lock().await;
                if guard
                    .as_ref()
                    .is_some_and(|c| c.unique_name() == conn.unique_name())
                {
                    guard.take();
                }
            }
            if !failed.retry || retried {
                return Err(failed.error);
            }
            retried = true;
        }
    }
}

/// A failed exchange, whether the connection is to be replaced, and whether asking again
/// on a new one may help (the bus closed the connection; not after a timeout).
struct Failed {
    error: PluginError,
    dropped: bool,
    retry: bool,
}

fn internal(message: String) -> PluginError {
    PluginError::new(Code::Internal, message)
}

/// Runs one D-Bus exchange within [`CALL_TIMEOUT`].
async fn bounded<T>(f: impl Future<Output = zbus::Result<T>>) -> Result<T, BusError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BusError::Bus(e)),
        Err(_) => Err(BusError::Timeout),
    }
}

#[derive(Debug)]
enum BusError {
    Bus(zbus::Error),
    Timeout,
}

impl BusError {
    /// Whether the connection itself failed (rather than the call being refused).
    fn connection_lost(&self) -> bool {
        match self {
            BusError::Timeout => true,
            BusError::Bus(e) => matches!(
                e,
                zbus::Error::InputOutput(_) | zbus::Error::Handshake(_) | zbus::Error::Address(_)
            ),
        }
    }
}

impl std::fmt::Display for BusError {
    /// As godbus words a `dbus.Error`: its first string argument, else its name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Timeout => write!(
                f,
                "no reply from the bus within {}s",
                CALL_TIMEOUT.as_secs()
            ),
            BusError::Bus(zbus::Error::MethodError(name, desc, _)) => match desc {
                Some(d) => f.write_str(d),
                None => f.write_str(name.as_str()),
            },
            BusError::Bus(zbus::Error::FDO(e)) => match e.as_ref() {
                zbus::fdo::Error::ZBus(inner) => write!(f, "{inner}"),
                other => f.write_str(zbus::DBusError::description(other).unwrap_or_default()),
            },
            BusError::Bus(e) => write!(f, "{e}"),
        }
    }
}

async fn unit_info(conn: &zbus::Connection, pid: u32) -> Result<UnitInfo, Failed> {
    let fail = |prefix: String, e: BusError| Failed {
        dropped: e.connection_lost(),
        retry: matches!(e, BusError::Bus(zbus::Error::InputOutput(_))),
        error: internal(format!("{prefix}: {e}")),
    };
    let manager = proxy(
        conn,
        ObjectPath::from_static_str_unchecked(MANAGER_PATH),
        MANAGER,
    )
    .await
    .map_err(|e| fail(format!("failed to get unit by pid {pid}"), e))?;
    let unit: OwnedObjectPath = bounded(manager.call("GetUnitByPID", &pid))
        .await
        .map_err(|e| fail(format!("failed to get unit by pid {pid}"), e))?;
    let unit = proxy(conn, unit.into_inner(), UNIT)
        .await
        .map_err(|e| fail(format!("failed to get unit by pid {pid}"), e))?;
    let property = |name: &'static str| {
        let unit = &unit;
        async move {
            let value: OwnedVariant = bounded(unit.get_property(name))
                .await
                .map_err(|e| fail(format!("error getting value for {name}"), e))?;
            let shown = format!("{value:?}");
            String::try_from(value).map_err(|_| Failed {
                dropped: false,
                retry: false,
                error: internal(format!(
                    "Returned value for {name} was not a string: {shown}"
                )),
            })
        }
    };
    Ok(UnitInfo {
        id: property("Id").await?,
        fragment_path: property("FragmentPath").await?,
    })
}

/// A proxy without a property cache (each property read is one `Properties.Get`).
async fn proxy<'a>(
    conn: &zbus::Connection,
    path: ObjectPath<'static>,
    interface: &'static str,
) -> Result<zbus::Proxy<'a>, BusError> {
    let builder = zbus::proxy::Builder::<zbus::Proxy<'a>>::new(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .destination(DESTINATION)
        .path(path)
        .interface(interface);
    bounded(builder.build()).await
}

#[async_trait]
impl WorkloadAttestor for SystemdAttestor {
    async fn attest(&self, pid: i32) -> PluginResult<Vec<String>> {
        let pid = u32::try_from(pid).map_err(|_| {
            PluginError::new(
                Code::Internal,
                format!("invalid value for PID: overflow converting int32({pid}) to uint"),
            )
        })?;
        let info = self.unit_info(pid).await?;
        Ok(vec![
            format!("id:{}", info.id),
            format!("fragment_path:{}", info.fragment_path),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_bus_is_spires_connection_error() {
        let dir = std::env::temp_dir().join(format!("spire-rs-systemd-{}", std::process::id()));
        let a = SystemdAttestor::with_address(format!("unix:path={}/none.sock", dir.display()));
        let err = a.attest(1).await.unwrap_err();
        assert_eq!(err.code, Code::Internal);
        assert!(
            err.message.starts_with("failed to open dbus connection: "),
            "{}",
            err.message
        );
        let err = a.attest(-1).await.unwrap_err();
        assert_eq!(
            err.message,
            "invalid value for PID: overflow converting int32(-1) to uint"
        );
    }
}
