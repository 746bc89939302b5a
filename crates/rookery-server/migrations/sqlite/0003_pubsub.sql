-- PubSub (XEP-0060) and PEP (XEP-0163). `service` is a pubsub domain or an account's bare JID.
CREATE TABLE pubsub_nodes (
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (service, node)
);

CREATE TABLE pubsub_affiliations (
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    jid TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (service, node, jid)
);

CREATE TABLE pubsub_subscriptions (
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    jid TEXT NOT NULL,
    subid TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (service, node, jid)
);

-- Items in publication order (seq); republishing an id moves it to the end.
CREATE TABLE pubsub_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    id TEXT NOT NULL,
    publisher TEXT NOT NULL,
    ts INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE UNIQUE INDEX pubsub_items_node_id ON pubsub_items(service, node, id);
CREATE INDEX pubsub_items_node_seq ON pubsub_items(service, node, seq);
