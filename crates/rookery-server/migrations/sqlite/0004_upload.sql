-- HTTP File Upload (XEP-0363): slots granted and files stored, seen by every node; contents
-- in upload_chunks when the upload store is the database.
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER,
    stored INTEGER NOT NULL,
    token_hash BLOB NOT NULL
);
CREATE INDEX uploads_owner ON uploads (owner);
CREATE INDEX uploads_expires ON uploads (expires) WHERE expires IS NOT NULL;

CREATE TABLE upload_chunks (
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (id, seq)
);
