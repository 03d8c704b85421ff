//! Who may talk to an API without a token: programs on this machine and the
//! node's own page (served from the API's address), and no other web page.
//!
//! Without a token the API listens on loopback only, but a web page opened in a
//! browser on the same machine can still reach it: through DNS rebinding (a name
//! the page controls is made to resolve to 127.0.0.1) or by sending simple
//! requests across origins. Both carry the page's name, in `Host` or `Origin`.
//! So a tokenless API answers only requests whose `Host` names the address it
//! listens on (or `localhost`, `127.0.0.1`, `[::1]`) with its port, and whose
//! `Origin`, when there is one, is `http://` and such a host: the node's own
//! page, opened at that address, passes. Command-line
//! clients send the address they dialled as `Host` and no `Origin`, so they
//! pass. With a token set, the token is the check and these are not needed.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap};

/// Why a request was refused: a sentence for the problem document.
pub(super) fn check(headers: &HeaderMap, bound: SocketAddr) -> Result<(), String> {
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !is_local(host, bound) {
            return Err(format!(
                "this API answers requests for {bound} or localhost:{} only, not for Host {host:?}; \
                 set api_token in the configuration to serve other names",
                bound.port()
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let local = origin
            .strip_prefix("http://")
            .is_some_and(|host| is_local(host, bound));
        if !local {
            return Err(format!(
                "requests from web pages ({origin}) are refused: this API can sign as the node"
            ));
        }
    }
    Ok(())
}

/// Whether `host` (`name` or `name:port`) names this machine's loopback at the
/// bound port.
fn is_local(host: &str, bound: SocketAddr) -> bool {
    let (name, port) = split_host(host);
    let port_matches = match port {
        Some(port) => port.parse::<u16>().ok() == Some(bound.port()),
        None => bound.port() == 80,
    };
    if !port_matches {
        return false;
    }
    let name = name.to_ascii_lowercase();
    let bound_ip = match bound {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    };
    name == "localhost" || name == "127.0.0.1" || name == "[::1]" || name == bound_ip
}

/// `name` and `port` of `host`, where an IPv6 name keeps its brackets.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => {
                let (name, rest) = host.split_at(end + 1);
                (name, rest.strip_prefix(':'))
            }
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn only_this_machine_s_names_at_the_bound_port_pass() {
        let bound: SocketAddr = "127.0.0.1:7800".parse().unwrap();
        for host in [
            "127.0.0.1:7800",
            "localhost:7800",
            "LOCALHOST:7800",
            "[::1]:7800",
        ] {
            assert!(check(&headers(Some(host), None), bound).is_ok(), "{host}");
        }
        assert!(check(&headers(None, None), bound).is_ok(), "no Host");
        for host in [
            "evil.example:7800",
            "evil.example",
            "127.0.0.1:7801",
            "127.0.0.1",
            "localhost.evil.example:7800",
            "127.0.0.1.nip.io:7800",
            "[::1]",
            "",
        ] {
            assert!(check(&headers(Some(host), None), bound).is_err(), "{host}");
        }
        let local = Some("127.0.0.1:7800");
        assert!(check(&headers(local, Some("http://localhost:7800")), bound).is_ok());
        for origin in [
            "http://evil.example",
            "https://localhost:7800",
            "null",
            "http://localhost:7801",
        ] {
            assert!(
                check(&headers(local, Some(origin)), bound).is_err(),
                "{origin}"
            );
        }
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(check(&headers(Some("[::1]:9000"), None), v6).is_ok());
        let port80: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(check(&headers(Some("localhost"), None), port80).is_ok());
    }
}
