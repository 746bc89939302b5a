CREATE TABLE accounts (
    jid TEXT PRIMARY KEY NOT NULL,
    host TEXT NOT NULL,
    salt BLOB NOT NULL,
    iterations INTEGER NOT NULL,
    sha1_stored_key BLOB NOT NULL,
    sha1_server_key BLOB NOT NULL,
    sha256_stored_key BLOB NOT NULL,
    sha256_server_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX accounts_host ON accounts(host);

CREATE TABLE roster_versions (
    user TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
);

CREATE TABLE roster_items (
    user TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL,
    ask INTEGER NOT NULL,
    approved INTEGER NOT NULL,
    groups TEXT NOT NULL,
    PRIMARY KEY (user, contact)
);

CREATE TABLE subscription_requests (
    user TEXT NOT NULL,
    contact TEXT NOT NULL,
    stanza TEXT NOT NULL,
    PRIMARY KEY (user, contact)
);

CREATE TABLE offline_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    stanza TEXT NOT NULL
);
CREATE INDEX offline_messages_user ON offline_messages(user, id);

CREATE TABLE user_data (
    user TEXT NOT NULL,
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user, store, key)
);
