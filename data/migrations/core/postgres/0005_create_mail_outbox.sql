-- Every email, sent or (without SMTP_URL) kept for developers to read. Bodies of
-- mails delivered over SMTP are cleared once sent: they carry live tokens.
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);

CREATE INDEX mail_outbox_to ON mail_outbox (to_address, id);
