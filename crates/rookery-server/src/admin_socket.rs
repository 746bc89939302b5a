//! The local administration socket: `<data_dir>/admin.sock`, a Unix socket only its owner may
//! open, speaking JSON lines (`{"method": "users.add", "params": ["a@b", "pw"]}` →
//! `{"result": ...}` or `{"error": {"code": n, "message": "..."}}`). The `rookery` CLI uses it to
//! reach a running server; the methods are those of Jabber-RPC (`modules::rpc`).

use crate::modules::rpc::{self, Value};
use crate::Server;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn path(server_data_dir: &Path) -> PathBuf {
    server_data_dir.join("admin.sock")
}

/// One request, answered as one JSON line.
pub async fn answer(server: &Server, line: &str) -> String {
    let req: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return error(rpc::PARSE_ERROR, &format!("not JSON: {e}")),
    };
    let Some(method) = req.get("method").and_then(|m| m.as_str()) else {
        return error(rpc::PARSE_ERROR, "no method");
    };
    let params: Vec<Value> = req
        .get("params")
        .and_then(|p| p.as_array())
        .map(|a| a.iter().map(Value::from_json).collect())
        .unwrap_or_default();
    match rpc::call(server, method, &params).await {
        Ok(v) => json!({ "result": v.to_json() }).to_string(),
        Err(rpc::Fault(code, message)) => error(code, &message),
    }
}

fn error(code: i64, message: &str) -> String {
    json!({ "error": { "code": code, "message": message } }).to_string()
}

/// Binds the socket (owner-only); `None` when another server already answers there.
#[cfg(unix)]
pub async fn bind(server: &Server) -> std::io::Result<Option<tokio::net::UnixListener>> {
    use std::os::unix::fs::PermissionsExt;
    let p = path(&server.config.data_dir);
    if tokio::net::UnixStream::connect(&p).await.is_ok() {
        tracing::warn!(path = %p.display(), "another server answers on the admin socket; not replacing it");
        return Ok(None);
    }
    let _ = std::fs::remove_file(&p);
    let listener = tokio::net::UnixListener::bind(&p)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(path = %p.display(), "admin socket listening");
    Ok(Some(listener))
}

/// Answers connections until shutdown, then removes the socket.
#[cfg(unix)]
pub async fn serve(server: Arc<Server>, listener: tokio::net::UnixListener) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let p = path(&server.config.data_dir);
    loop {
        let (conn, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = server.shutdown.cancelled() => break,
        };
        let server = server.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = conn.into_split();
            let mut lines = BufReader::new(rd).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut reply = answer(&server, &line).await;
                reply.push('\n');
                if wr.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
    let _ = std::fs::remove_file(&p);
    Ok(())
}

/// Calls a method on the server listening at `socket`. `Ok(None)` when no server answers there.
#[cfg(unix)]
pub async fn call(
    socket: &Path,
    method: &str,
    params: serde_json::Value,
) -> std::io::Result<Option<Result<serde_json::Value, String>>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Ok(mut conn) = tokio::net::UnixStream::connect(socket).await else {
        return Ok(None);
    };
    let mut req = json!({ "method": method, "params": params }).to_string();
    req.push('\n');
    conn.write_all(req.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).await?;
    let v: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if let Some(e) = v.get("error") {
        let msg = e.get("message").and_then(|m| m.as_str()).unwrap_or("error");
        return Ok(Some(Err(msg.to_string())));
    }
    Ok(Some(Ok(v.get("result").cloned().unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_json_lines_with_rpc_methods() {
        let dir = tempfile::tempdir().unwrap();
        let config = rookery_core::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let server =
            Server::with_storage(config, Arc::new(crate::storage::MemoryStorage::default()))
                .unwrap();
        let r = answer(
            &server,
            r#"{"method":"users.add","params":["x@localhost","pw123456"]}"#,
        )
        .await;
        assert_eq!(r, r#"{"result":"x@localhost"}"#);
        let r = answer(
            &server,
            r#"{"method":"users.count","params":["localhost"]}"#,
        )
        .await;
        assert_eq!(r, r#"{"result":1}"#);
        let r = answer(
            &server,
            r#"{"method":"users.add","params":["x@localhost","pw123456"]}"#,
        )
        .await;
        assert!(r.contains("\"error\"") && r.contains("exists"), "{r}");
        assert!(answer(&server, "nonsense").await.contains("-32700"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_socket_serves_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let config = rookery_core::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let server =
            Server::with_storage(config, Arc::new(crate::storage::MemoryStorage::default()))
                .unwrap();
        let listener = bind(&server).await.unwrap().unwrap();
        let task = tokio::spawn(serve(server.clone(), listener));
        let p = path(dir.path());
        // A second server on the same data dir leaves the live socket alone.
        assert!(bind(&server).await.unwrap().is_none());
        let stats = call(&p, "stats.get", json!([]))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(stats["online_sessions"], 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        server.shutdown.cancel();
        task.await.unwrap().unwrap();
        assert!(!p.exists(), "the socket is removed on shutdown");
    }
}
