-- The SQLite schema (migrations/sqlite 0001-0003) in PostgreSQL types. Text keys use the "C"
-- collation so that ORDER BY is byte order, as in SQLite and the memory backend, whatever the
-- database's locale. `user` is reserved in PostgreSQL, hence `username`.

CREATE TABLE accounts (
    jid TEXT COLLATE "C" PRIMARY KEY,
    host TEXT COLLATE "C" NOT NULL,
    salt BYTEA NOT NULL,
    iterations BIGINT NOT NULL,
    sha1_stored_key BYTEA NOT NULL,
    sha1_server_key BYTEA NOT NULL,
    sha256_stored_key BYTEA NOT NULL,
    sha256_server_key BYTEA NOT NULL,
    -- Seconds since the Unix epoch.
    created_at BIGINT NOT NULL
);
CREATE INDEX accounts_host ON accounts (host, jid);

-- The version row is updated in the transaction that changes the roster: its row lock orders
-- concurrent changes from several nodes.
CREATE TABLE roster_versions (
    username TEXT COLLATE "C" PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE roster_items (
    username TEXT COLLATE "C" NOT NULL,
    contact TEXT COLLATE "C" NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL,
    ask BOOLEAN NOT NULL,
    approved BOOLEAN NOT NULL,
    groups TEXT[] NOT NULL,
    PRIMARY KEY (username, contact)
);

CREATE TABLE subscription_requests (
    username TEXT COLLATE "C" NOT NULL,
    contact TEXT COLLATE "C" NOT NULL,
    stanza TEXT NOT NULL,
    PRIMARY KEY (username, contact)
);

CREATE TABLE offline_messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT COLLATE "C" NOT NULL,
    stanza TEXT NOT NULL
);
CREATE INDEX offline_messages_user ON offline_messages (username, id);

CREATE TABLE user_data (
    username TEXT COLLATE "C" NOT NULL,
    store TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (username, store, key)
);
CREATE INDEX user_data_store ON user_data (store, username, key);

-- MAM (XEP-0313). `seq` is the archive order; `ts` is microseconds since the Unix epoch.
CREATE TABLE archive (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    ts BIGINT NOT NULL,
    with_jid TEXT COLLATE "C" NOT NULL,
    stanza TEXT NOT NULL
);
CREATE UNIQUE INDEX archive_owner_id ON archive (owner, id);
CREATE INDEX archive_owner_seq ON archive (owner, seq);
CREATE INDEX archive_owner_with ON archive (owner, with_jid, seq);
CREATE INDEX archive_ts ON archive (ts);

-- PubSub (XEP-0060) and PEP (XEP-0163). `service` is a pubsub domain or an account's bare JID.
CREATE TABLE pubsub_nodes (
    service TEXT COLLATE "C" NOT NULL,
    node TEXT COLLATE "C" NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (service, node)
);

CREATE TABLE pubsub_affiliations (
    service TEXT COLLATE "C" NOT NULL,
    node TEXT COLLATE "C" NOT NULL,
    jid TEXT COLLATE "C" NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (service, node, jid)
);

CREATE TABLE pubsub_subscriptions (
    service TEXT COLLATE "C" NOT NULL,
    node TEXT COLLATE "C" NOT NULL,
    jid TEXT COLLATE "C" NOT NULL,
    subid TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (service, node, jid)
);

-- Items in publication order (seq); republishing an id moves it to the end.
CREATE TABLE pubsub_items (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service TEXT COLLATE "C" NOT NULL,
    node TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    publisher TEXT NOT NULL,
    ts BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE UNIQUE INDEX pubsub_items_node_id ON pubsub_items (service, node, id);
CREATE INDEX pubsub_items_node_seq ON pubsub_items (service, node, seq);
