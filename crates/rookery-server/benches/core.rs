//! Micro-benchmarks of the server's hot paths (run on demand: `cargo bench -p rookery-server`;
//! not part of the test run): SCRAM (deriving credentials, a whole server-side exchange) and
//! routing a chat message to a local session's inbox.

use criterion::{criterion_group, criterion_main, Criterion};
use rookery_core::config::Config;
use rookery_core::{Element, FullJid};
use rookery_server::session::SessionHandle;
use rookery_server::storage::MemoryStorage;
use rookery_server::{scram, Server};
use std::hint::black_box;
use std::sync::Arc;

fn scram_benches(c: &mut Criterion) {
    c.bench_function(
        "derive SCRAM credentials (SHA-1 and SHA-256, 4096 rounds)",
        |b| b.iter(|| black_box(scram::derive_credentials("correct horse battery staple"))),
    );
    let creds = scram::derive_credentials("pw");
    c.bench_function("verify a password against stored keys", |b| {
        b.iter(|| black_box(scram::verify_password(&creds, "pw")))
    });
}

fn routing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("rookery-bench-{}", std::process::id()));
    let config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let (server, mut rx) = rt.block_on(async {
        let server = Server::with_storage(config, Arc::new(MemoryStorage::default())).unwrap();
        let (tx, rx) = rookery_server::inbox::channel(1024);
        let bob: FullJid = "bob@localhost/phone".parse().unwrap();
        let handle = SessionHandle::new(server.next_id(), bob, tx);
        handle.update(server.sessions.as_ref(), |st| {
            st.available = true;
            st.priority = 0;
        });
        server.sessions.insert(handle);
        (server, rx)
    });
    let msg = Element::parse(
        "<message xmlns='jabber:client' from='alice@localhost/desk' to='bob@localhost/phone' \
         type='chat' id='x'><body>Hello Bob</body></message>",
    )
    .unwrap();
    c.bench_function("route a chat message to a local session", |b| {
        b.iter(|| {
            rt.block_on(rookery_server::router::deliver(&server, msg.clone()));
            black_box(rx.try_recv().is_ok())
        })
    });
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, scram_benches, routing);
criterion_main!(benches);
