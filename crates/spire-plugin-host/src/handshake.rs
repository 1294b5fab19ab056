//! go-plugin's handshake line, which a plugin prints on stdout once it listens:
//! `CORE-VERSION|APP-VERSION|NETWORK|ADDRESS|PROTOCOL[|SERVER-CERT[|MULTIPLEX]]`. SPIRE
//! accepts core version 1, application protocol version 1 and the `grpc` protocol only,
//! without AutoMTLS; the messages below are go-plugin's.

use std::path::PathBuf;

/// go-plugin's core protocol version.
pub(crate) const CORE_PROTOCOL_VERSION: i64 = 1;
/// The application protocol version SPIRE's catalog offers.
pub(crate) const APP_PROTOCOL_VERSION: i64 = 1;

/// Where the plugin serves gRPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PluginAddress {
    /// A UNIX socket path (what plugins use on Linux).
    Unix(PathBuf),
    /// `host:port` on TCP.
    Tcp(String),
}

/// Parses the first line the plugin printed; `eof` when stdout closed without a line. The
/// error is go-plugin's text (SPIRE shows it after "failed to launch plugin: ").
pub(crate) fn parse(line: &str, eof: bool) -> Result<PluginAddress, String> {
    let line = line.trim();
    let parts: Vec<&str> = line.split('|').collect();
    let [core, app, network, address, rest @ ..] = parts.as_slice() else {
        let mut text = format!("Unrecognized remote plugin message: {line}");
        if eof {
            text.push_str("\nFailed to read any lines from plugin's stdout");
        }
        text.push_str(
            "\nThe plugin did not print go-plugin's handshake line. It may be built for \
             another architecture, lack a shared library it needs, not be executable by this \
             process, or not be a go-plugin plugin at all.",
        );
        return Err(text);
    };
    let core_version: i64 = core.parse().map_err(|_| {
        format!(
            "error parsing core protocol version: strconv.Atoi: parsing \"{core}\": invalid syntax"
        )
    })?;
    if core_version != CORE_PROTOCOL_VERSION {
        return Err(format!(
            "incompatible core API version with plugin. Plugin version: {core}, Core version: \
             {CORE_PROTOCOL_VERSION}\n\nTo fix this, the plugin usually only needs to be \
             recompiled.\nPlease report this to the plugin author"
        ));
    }
    let app_version: i64 = app.parse().map_err(|_| {
        format!(
            "Error parsing protocol version \"{app}\": strconv.Atoi: parsing \"{app}\": invalid syntax"
        )
    })?;
    if app_version != APP_PROTOCOL_VERSION {
        return Err(format!(
            "incompatible API version with plugin. Plugin version: {app_version}, Client \
             versions: [{APP_PROTOCOL_VERSION}]"
        ));
    }
    let address = match *network {
        "unix" => PluginAddress::Unix(PathBuf::from(address)),
        "tcp" => PluginAddress::Tcp((*address).to_owned()),
        _ => return Err(format!("unknown address type: {address}")),
    };
    let protocol = rest.first().copied().unwrap_or("netrpc");
    if protocol != "grpc" {
        return Err(format!(
            "unsupported plugin protocol \"{protocol}\". Supported: [grpc]"
        ));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_plugin_on_a_unix_socket() {
        assert_eq!(
            parse("1|1|unix|/tmp/plugin123|grpc|\n", false).unwrap(),
            PluginAddress::Unix("/tmp/plugin123".into())
        );
        assert_eq!(
            parse("1|1|tcp|127.0.0.1:10000|grpc|", false).unwrap(),
            PluginAddress::Tcp("127.0.0.1:10000".into())
        );
    }

    #[test]
    fn bad_lines_get_go_plugins_messages() {
        let e = parse("hello world", false).unwrap_err();
        assert!(
            e.starts_with("Unrecognized remote plugin message: hello world\n"),
            "{e}"
        );
        let e = parse("", true).unwrap_err();
        assert!(
            e.starts_with(
                "Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout"
            ),
            "{e}"
        );
        assert!(parse("2|1|unix|/x|grpc", false).unwrap_err().starts_with(
            "incompatible core API version with plugin. Plugin version: 2, Core version: 1"
        ));
        assert_eq!(
            parse("x|1|unix|/x|grpc", false).unwrap_err(),
            "error parsing core protocol version: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse("1|2|unix|/x|grpc", false).unwrap_err(),
            "incompatible API version with plugin. Plugin version: 2, Client versions: [1]"
        );
        assert_eq!(
            parse("1|1|unix|/x|netrpc", false).unwrap_err(),
            "unsupported plugin protocol \"netrpc\". Supported: [grpc]"
        );
        assert_eq!(
            parse("1|1|unix|/x", false).unwrap_err(),
            "unsupported plugin protocol \"netrpc\". Supported: [grpc]"
        );
        assert_eq!(
            parse("1|1|pipe|/x|grpc", false).unwrap_err(),
            "unknown address type: /x"
        );
    }
}
