//! Clients spread over several servers (the nodes of a cluster): which server each client signs
//! in to, and whom it sends to, so that with two servers every message crosses from one to the
//! other.

/// One `--server` address, `host:port` (an IPv6 host in brackets: `[::1]:5222`).
pub fn parse_server(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("'{port}' in '{s}' is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("'{s}' has no host"));
    }
    Ok((host.to_string(), port))
}

/// The server client `index` signs in to, out of `servers`: round robin, so with two servers
/// the even clients are on the first and the odd ones on the second.
pub fn server_of(index: usize, servers: usize) -> usize {
    index % servers.max(1)
}

/// Whom each online client sends to, by position in `servers` (the server of each online
/// client, in client order): the next client on another server, cyclically, so every message
/// crosses servers; the next client when all share one server. With two servers and every
/// client online that is client i+1, as on one server, and each client receives from one.
pub fn targets(servers: &[usize]) -> Vec<usize> {
    let m = servers.len();
    (0..m)
        .map(|p| {
            (1..m)
                .map(|k| (p + k) % m)
                .find(|&q| servers[q] != servers[p])
                .unwrap_or((p + 1) % m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            parse_server("127.0.0.1:5222"),
            Ok(("127.0.0.1".into(), 5222))
        );
        assert_eq!(parse_server("[::1]:45222"), Ok(("::1".into(), 45222)));
        assert!(parse_server("localhost").is_err());
        assert!(parse_server(":5222").is_err());
        assert!(parse_server("h:99999").is_err());
    }

    #[test]
    fn one_server_keeps_the_ring() {
        let servers: Vec<usize> = (0..5).map(|i| server_of(i, 1)).collect();
        assert_eq!(servers, [0; 5]);
        assert_eq!(targets(&servers), [1, 2, 3, 4, 0]);
    }

    #[test]
    fn two_servers_every_message_crosses() {
        let servers: Vec<usize> = (0..6).map(|i| server_of(i, 2)).collect();
        assert_eq!(servers, [0, 1, 0, 1, 0, 1]);
        let t = targets(&servers);
        assert_eq!(t, [1, 2, 3, 4, 5, 0]);
        for (p, q) in t.iter().enumerate() {
            assert_ne!(servers[p], servers[*q]);
        }
        // An odd count, or a client that failed to sign in: still always the other server.
        for servers in [vec![0, 1, 0, 1, 0], vec![0, 0, 1, 0, 1, 1]] {
            let t = targets(&servers);
            for (p, q) in t.iter().enumerate() {
                assert_ne!(servers[p], servers[*q], "{servers:?} {t:?}");
            }
        }
        // Nobody online on the other server: fall back to the ring.
        assert_eq!(targets(&[1, 1]), [1, 0]);
    }
}
