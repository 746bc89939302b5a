-- HTTP File Upload (XEP-0363): slots granted and files stored, seen by every node; contents
-- in upload_chunks when the upload store is the database.
CREATE TABLE uploads (
    id TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT,
    stored BOOLEAN NOT NULL,
    token_hash BYTEA NOT NULL
);
CREATE INDEX uploads_owner ON uploads (owner);
CREATE INDEX uploads_expires ON uploads (expires) WHERE expires IS NOT NULL;

CREATE TABLE upload_chunks (
    id TEXT COLLATE "C" NOT NULL,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (id, seq)
);
