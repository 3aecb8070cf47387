//! The tables, written once for both backends. Where the dialects differ the text holds a
//! named placeholder ([`Dialect`] says what each becomes, and why).
//!
//! Migrations are numbered and recorded in `schema_version` (one row per applied version): a
//! database keeps the text it was created with, so a migration, once released, never changes
//! meaning; a new one gets the next number.

use super::StoreError;

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect's words for the placeholders of the schema text.
    fn words(self) -> [(&'static str, &'static str); 5] {
        match self {
            Dialect::Sqlite => [
                // SQLite's integers are 64-bit whatever they are called; `INTEGER` is the
                // name its rowid alias below requires.
                ("{int}", "INTEGER"),
                // The rowid itself; AUTOINCREMENT: a seq is never handed out again, even
                // after the newest item was dropped.
                ("{seq}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
                // No separate rowid b-tree: the table is stored in its primary key's order.
                ("{clustered}", "WITHOUT ROWID"),
                // No boolean type: 0 and 1.
                ("{bool}", "INTEGER"),
                ("{false}", "0"),
            ],
            Dialect::Postgres => [
                // PostgreSQL's `INTEGER` is 32-bit; milliseconds need 64.
                ("{int}", "BIGINT"),
                ("{seq}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
                // Tables are heaps; nothing to ask for.
                ("{clustered}", ""),
                ("{bool}", "BOOLEAN"),
                ("{false}", "FALSE"),
            ],
        }
    }

    /// `text` with the placeholders in this dialect's words.
    pub(super) fn render(self, text: &str) -> String {
        self.words()
            .iter()
            .fold(text.to_owned(), |sql, (placeholder, word)| {
                sql.replace(placeholder, word)
            })
    }
}

/// The table that records which migrations ran.
pub(super) const SCHEMA_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
         version    {int} NOT NULL PRIMARY KEY,
         applied_ms {int} NOT NULL
     )";

/// Numbered migrations, applied in order, each in its own transaction.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE records (
        tenant          TEXT    NOT NULL,
        kind            TEXT    NOT NULL,
        id              TEXT    NOT NULL,
        state           TEXT    NOT NULL,
        kept            TEXT    NOT NULL DEFAULT 'null',
        lease_until_ms  {int}   NOT NULL,
        created_ms      {int}   NOT NULL,
        updated_ms      {int}   NOT NULL,
        PRIMARY KEY (tenant, kind, id)
    ) {clustered};
    CREATE INDEX records_prune ON records (updated_ms) WHERE state IN ('done', 'failed');

    CREATE TABLE outbox (
        seq             {seq},
        tenant          TEXT    NOT NULL,
        kind            TEXT    NOT NULL,
        id              TEXT    NOT NULL,
        request         TEXT    NOT NULL,
        state           TEXT    NOT NULL,
        attempts        {int}   NOT NULL DEFAULT 0,
        next_attempt_ms {int}   NOT NULL,
        last_error      TEXT,
        created_ms      {int}   NOT NULL,
        updated_ms      {int}   NOT NULL,
        FOREIGN KEY (tenant, kind, id) REFERENCES records (tenant, kind, id)
    );
    CREATE INDEX outbox_pending ON outbox (tenant, seq) WHERE state = 'pending';
    CREATE INDEX outbox_record ON outbox (tenant, kind, id);

    CREATE TABLE outbox_leases (
        tenant          TEXT    NOT NULL PRIMARY KEY,
        holder          TEXT    NOT NULL,
        until_ms        {int}   NOT NULL
    ) {clustered};

    CREATE TABLE kv (
        tenant          TEXT    NOT NULL,
        key             TEXT    NOT NULL,
        value           TEXT    NOT NULL,
        expires_ms      {int}   NOT NULL,
        PRIMARY KEY (tenant, key)
    ) {clustered};

    CREATE TABLE codes (
        tenant          TEXT    NOT NULL,
        key             TEXT    NOT NULL,
        code            TEXT    NOT NULL,
        expires_ms      {int}   NOT NULL,
        attempts_left   {int}   NOT NULL,
        PRIMARY KEY (tenant, key)
    ) {clustered};
    "#,
    ),
    (
        2,
        r#"
    CREATE TABLE claims (
        scope           TEXT    NOT NULL,
        key             TEXT    NOT NULL,
        until_ms        {int}   NOT NULL,
        PRIMARY KEY (scope, key)
    ) {clustered};

    CREATE TABLE app_tenants (
        account_id          TEXT    NOT NULL PRIMARY KEY,
        app_id              TEXT    NOT NULL,
        account_name        TEXT    NOT NULL,
        state               TEXT    NOT NULL,
        access_token_sealed TEXT,
        token_sha256        TEXT    UNIQUE,
        mapping             TEXT,
        base_url            TEXT,
        credentials_sealed  TEXT,
        settings            TEXT    NOT NULL DEFAULT 'null',
        external_search     {bool}  NOT NULL DEFAULT {false},
        vendor_note         TEXT,
        created_ms          {int}   NOT NULL,
        updated_ms          {int}   NOT NULL
    ) {clustered};
    "#,
    ),
    (
        3,
        r#"
    -- One row per account, source and text (repeats count up `times`). Texts are at most 500
    -- characters (`app::recent`): an index entry stays within PostgreSQL's limit.
    CREATE TABLE app_failures (
        id              {seq},
        account_id      TEXT    NOT NULL,
        source          TEXT    NOT NULL,
        text            TEXT    NOT NULL,
        times           {int}   NOT NULL,
        first_ms        {int}   NOT NULL,
        last_ms         {int}   NOT NULL,
        UNIQUE (account_id, source, text)
    );
    CREATE INDEX app_failures_newest ON app_failures (account_id, last_ms);
    CREATE INDEX app_failures_prune ON app_failures (last_ms);
    "#,
    ),
    (
        4,
        r#"
    CREATE TABLE instances (
        instance        TEXT    NOT NULL PRIMARY KEY,
        joined_ms       {int}   NOT NULL,
        beat_ms         {int}   NOT NULL,
        until_ms        {int}   NOT NULL
    ) {clustered};

    CREATE TABLE vendor_rates (
        tenant          TEXT    NOT NULL PRIMARY KEY,
        tat_us          {int}   NOT NULL,
        now_us          {int}   NOT NULL
    ) {clustered};

    CREATE TABLE vendor_signals (
        tenant          TEXT    NOT NULL PRIMARY KEY,
        paused_until_ms {int}   NOT NULL,
        open_until_ms   {int}   NOT NULL
    ) {clustered};
    "#,
    ),
    (
        5,
        // Every write to an app tenant stamps it with the next number of a one-row counter
        // (`sql::APP_NEXT_CHANGE` says why a counter), so instances re-read only the rows
        // changed since the newest number they saw. Rows already there are numbered in the
        // order they last changed. A bridge from before this migration (a rolling upgrade)
        // writes without stamping — its new rows get the default 0, its updates keep the old
        // number — so only the periodic full re-read (`crate::app::refresh`) sees those.
        r#"
    ALTER TABLE app_tenants ADD COLUMN change_number {int} NOT NULL DEFAULT 0;
    UPDATE app_tenants SET change_number = numbered.n
      FROM (SELECT account_id, ROW_NUMBER() OVER (ORDER BY updated_ms, account_id) AS n
              FROM app_tenants) AS numbered
     WHERE app_tenants.account_id = numbered.account_id;
    CREATE INDEX app_tenants_changes ON app_tenants (change_number);

    CREATE TABLE app_tenant_counter (
        id              {int}   NOT NULL PRIMARY KEY CHECK (id = 1),
        newest_change   {int}   NOT NULL
    ) {clustered};
    INSERT INTO app_tenant_counter (id, newest_change)
         SELECT 1, COALESCE(MAX(change_number), 0) FROM app_tenants;
    "#,
    ),
];

/// The newest schema version this build knows.
pub(super) fn known_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The refusal to open a database that a newer loyalty-bridge has migrated.
pub(super) fn newer_schema(found: i64, known: i64) -> StoreError {
    StoreError::Corrupt(format!(
        "the database schema is at version {found}, newer than the {known} this loyalty-bridge \
         knows: run a newer loyalty-bridge (or restore the database from before the upgrade)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_rendered_in_both_dialects() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for (_, text) in MIGRATIONS.iter().chain([&(0, SCHEMA_VERSION_TABLE)]) {
                let sql = dialect.render(text);
                assert!(!sql.contains('{'), "{dialect:?}: {sql}");
            }
        }
    }

    #[test]
    fn versions_increase_from_one() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, (1..=known_version()).collect::<Vec<_>>());
    }
}
