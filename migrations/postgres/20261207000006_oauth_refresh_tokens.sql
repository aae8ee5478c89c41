-- The newest refresh token of each OAuth2 client whose token endpoint rotates them
-- (issue 16 §7): kept here, encrypted like API keys, so that a restart or another
-- replica refreshes with the newest one instead of one the server has invalidated.
-- client_key: SHA-256 of the token endpoint, the client id and the refresh token the
-- operator configured (a newly configured token starts a new row).
CREATE TABLE oauth_refresh_tokens (
    client_key TEXT PRIMARY KEY,
    refresh_token_ciphertext TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
