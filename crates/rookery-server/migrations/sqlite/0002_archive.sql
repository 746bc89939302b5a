CREATE TABLE archive (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    with_jid TEXT NOT NULL,
    stanza TEXT NOT NULL
);
CREATE UNIQUE INDEX archive_owner_id ON archive(owner, id);
CREATE INDEX archive_owner_seq ON archive(owner, seq);
CREATE INDEX archive_owner_with ON archive(owner, with_jid, seq);
