//! Every statement the store runs, written once for both backends.
//!
//! Parameters are PostgreSQL's `$1`, `$2`…. SQLite accepts the same text but reads `$N` as a
//! *named* parameter, numbered in order of first appearance (in `VALUES ($1, $5, $4)`, `$5` is
//! its second): the SQLite backend therefore binds by name, never by position.
//!
//! Where the dialects cannot share a text, both are here, side by side, named `…_SQLITE` and
//! `…_POSTGRES`, with the reason. The columns a `SELECT` names are read by position in
//! `rows.rs`: the `*_columns!` lists below and the functions there change together.

/// The columns [`super::rows::record`] reads, in its order.
macro_rules! record_columns {
    () => {
        "tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms"
    };
}

/// The columns [`super::rows::outbox_item`] reads, in its order.
macro_rules! outbox_columns {
    () => {
        "seq, tenant, kind, id, request, state, attempts, next_attempt_ms, last_error, created_ms"
    };
}

/// The columns [`super::rows::app_tenant`] reads, in its order.
macro_rules! app_columns {
    () => {
        "account_id, app_id, account_name, state, access_token_sealed, token_sha256, mapping, \
         base_url, credentials_sealed, settings, external_search, vendor_note, created_ms, \
         updated_ms, change_number"
    };
}

/// The columns [`super::rows::app_failure`] reads, in its order.
macro_rules! app_failure_columns {
    () => {
        "source, text, times, first_ms, last_ms"
    };
}

// --- schema versions ---

/// The newest applied migration, 0 for a new database.
pub(super) const SCHEMA_VERSION: &str =
    "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_version";

pub(super) const RECORD_SCHEMA_VERSION: &str =
    "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)";

// --- journal ---

/// `$1` tenant, `$2` kind, `$3` id.
pub(super) const RECORD: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM records WHERE tenant = $1 AND kind = $2 AND id = $3"
);

/// Creates the record in flight, or takes it over when failed or its lease ran out; a row comes
/// back only when the caller now owns it. On a conflict PostgreSQL locks the existing row and
/// re-checks the `WHERE` on its latest version, so of many concurrent callers exactly one wins.
/// `$4` now, `$5` lease until.
pub(super) const BEGIN_RECORD: &str =
    "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
     VALUES ($1, $2, $3, 'in_flight', 'null', $5, $4, $4)
     ON CONFLICT (tenant, kind, id) DO UPDATE
        SET state = 'in_flight', kept = 'null',
            lease_until_ms = excluded.lease_until_ms, updated_ms = excluded.updated_ms
      WHERE records.state = 'failed'
         OR (records.state = 'in_flight' AND records.lease_until_ms <= excluded.updated_ms)
     RETURNING 1";

/// `$4` kept, `$5` now.
pub(super) const FINISH_RECORD: &str =
    "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
     VALUES ($1, $2, $3, 'done', $4, 0, $5, $5)
     ON CONFLICT (tenant, kind, id) DO UPDATE
        SET state = 'done', kept = excluded.kept, updated_ms = excluded.updated_ms";

/// `$4` now.
pub(super) const ABANDON_RECORD: &str = "UPDATE records SET state = 'failed', updated_ms = $4
      WHERE tenant = $1 AND kind = $2 AND id = $3 AND state = 'in_flight'";

// --- locks ---

/// PostgreSQL: makes the transactions that take the same key take turns, until each ends.
/// `$1` (an `INTEGER`) names what is locked (a lock space of `postgres.rs`), `$2` whose (a
/// tenant, an account). Two names may share a hash: they then take turns needlessly, never
/// wrongly. SQLite needs none: its transactions are `BEGIN IMMEDIATE`, holding the database's
/// one write lock from their start.
pub(super) const XACT_LOCK_POSTGRES: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

// --- outbox ---

/// The first half of an enqueue. `$4` now.
pub(super) const QUEUE_RECORD: &str =
    "INSERT INTO records (tenant, kind, id, state, kept, lease_until_ms, created_ms, updated_ms)
     VALUES ($1, $2, $3, 'queued', 'null', 0, $4, $4)
     ON CONFLICT (tenant, kind, id) DO UPDATE
        SET state = 'queued', updated_ms = excluded.updated_ms";

/// The second half of an enqueue. `$4` request, `$5` now.
pub(super) const INSERT_ITEM: &str = "INSERT INTO outbox (tenant, kind, id, request, state, attempts, next_attempt_ms, created_ms, updated_ms)
     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)
     RETURNING seq";

/// Changes one row when the lease is taken or renewed, none when another holder's runs.
/// `$1` tenant, `$2` holder, `$3` now, `$4` until.
pub(super) const LEASE_OUTBOX: &str =
    "INSERT INTO outbox_leases (tenant, holder, until_ms) VALUES ($1, $2, $4)
     ON CONFLICT (tenant) DO UPDATE
        SET holder = excluded.holder, until_ms = excluded.until_ms
      WHERE outbox_leases.holder = excluded.holder OR outbox_leases.until_ms <= $3";

pub(super) const RELEASE_OUTBOX_LEASES: &str = "DELETE FROM outbox_leases WHERE holder = $1";

pub(super) const NEXT_PENDING: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox WHERE tenant = $1 AND state = 'pending' ORDER BY seq LIMIT 1"
);

pub(super) const TENANTS_WITH_PENDING: &str =
    "SELECT DISTINCT tenant FROM outbox WHERE state = 'pending' ORDER BY tenant";

/// The record an outbox item belongs to, and the item's state (read by
/// [`super::rows::item_owner`]). SQLite has no row locks and needs none: its transactions are
/// `BEGIN IMMEDIATE`, holding the database's one write lock.
pub(super) const ITEM_OWNER_SQLITE: &str =
    "SELECT tenant, kind, id, state FROM outbox WHERE seq = $1";
/// PostgreSQL: the item's row stays locked until the transaction ends, so instances deciding
/// about the same item take turns.
pub(super) const ITEM_OWNER_POSTGRES: &str =
    "SELECT tenant, kind, id, state FROM outbox WHERE seq = $1 FOR UPDATE";

/// `$2` now.
pub(super) const DELIVER_ITEM: &str =
    "UPDATE outbox SET state = 'delivered', updated_ms = $2 WHERE seq = $1";

/// The record of a delivered item. `$4` kept, `$5` now.
pub(super) const FINISH_DELIVERED_RECORD: &str =
    "UPDATE records SET state = 'done', kept = $4, updated_ms = $5
      WHERE tenant = $1 AND kind = $2 AND id = $3";

/// `$2` error, `$3` next attempt.
pub(super) const POSTPONE_ITEM: &str =
    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_ms = $3
      WHERE seq = $1 AND state = 'pending'";

/// `$2` error, `$3` now.
pub(super) const REFUSE_ITEM: &str =
    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $2,
            updated_ms = $3
      WHERE seq = $1";

/// The record of a refused or dropped item; one a repeat has meanwhile taken over (in flight,
/// done) stays as it is. `$4` now.
pub(super) const FAIL_QUEUED_RECORD: &str = "UPDATE records SET state = 'failed', updated_ms = $4
      WHERE tenant = $1 AND kind = $2 AND id = $3 AND state = 'queued'";

/// `$1` tenant or NULL for all, `$2` include delivered. The casts tell PostgreSQL the types of
/// parameters it cannot infer from `IS NULL` and `OR`.
pub(super) const OUTBOX_ITEMS: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox
      WHERE (CAST($1 AS TEXT) IS NULL OR tenant = CAST($1 AS TEXT))
        AND (CAST($2 AS BOOLEAN) OR state <> 'delivered')
      ORDER BY seq"
);

/// A failed item's record back to queued — unless a repeat has meanwhile taken it over (it is
/// in flight or done): then delivering the item too would do the sale twice. `$4` now.
pub(super) const REQUEUE_RECORD: &str = "UPDATE records SET state = 'queued', updated_ms = $4
      WHERE tenant = $1 AND kind = $2 AND id = $3
        AND state IN ('failed', 'queued')";

/// `$2` now.
pub(super) const RETRY_ITEM: &str =
    "UPDATE outbox SET state = 'pending', next_attempt_ms = $2, updated_ms = $2
      WHERE seq = $1";

pub(super) const DELETE_ITEM: &str = "DELETE FROM outbox WHERE seq = $1";

/// Read by [`super::rows::outbox_stats`].
pub(super) const OUTBOX_STATS: &str = "SELECT tenant,
            COUNT(*) FILTER (WHERE state = 'pending'),
            COUNT(*) FILTER (WHERE state = 'failed'),
            MIN(created_ms) FILTER (WHERE state = 'pending')
       FROM outbox WHERE state IN ('pending', 'failed')
      GROUP BY tenant ORDER BY tenant";

// --- key-value: values, codes, claims ---

/// `$3` now.
pub(super) const KV_GET: &str =
    "SELECT value FROM kv WHERE tenant = $1 AND key = $2 AND expires_ms > $3";

/// `$3` value, `$4` expires.
pub(super) const KV_PUT: &str =
    "INSERT INTO kv (tenant, key, value, expires_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (tenant, key) DO UPDATE
        SET value = excluded.value, expires_ms = excluded.expires_ms";

/// `$3` code, `$4` expires, `$5` attempts.
pub(super) const CODE_PUT: &str = "INSERT INTO codes (tenant, key, code, expires_ms, attempts_left)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (tenant, key) DO UPDATE
        SET code = excluded.code, expires_ms = excluded.expires_ms,
            attempts_left = excluded.attempts_left";

/// The stored code, read by [`super::rows::stored_code`]. SQLite: inside `BEGIN IMMEDIATE`
/// (see [`ITEM_OWNER_SQLITE`]).
pub(super) const CODE_SQLITE: &str =
    "SELECT code, expires_ms, attempts_left FROM codes WHERE tenant = $1 AND key = $2";
/// PostgreSQL: locked, so two checks of one code take turns and each uses an attempt.
pub(super) const CODE_POSTGRES: &str = "SELECT code, expires_ms, attempts_left FROM codes
      WHERE tenant = $1 AND key = $2 FOR UPDATE";

pub(super) const CODE_DELETE: &str = "DELETE FROM codes WHERE tenant = $1 AND key = $2";

/// `$3` attempts left.
pub(super) const CODE_SET_ATTEMPTS: &str =
    "UPDATE codes SET attempts_left = $3 WHERE tenant = $1 AND key = $2";

/// Changes one row for the first claimant, none while an earlier claim runs.
/// `$1` scope, `$2` key, `$3` now, `$4` until.
pub(super) const CLAIM: &str = "INSERT INTO claims (scope, key, until_ms) VALUES ($1, $2, $4)
     ON CONFLICT (scope, key) DO UPDATE SET until_ms = excluded.until_ms
      WHERE claims.until_ms <= $3";

// --- app tenants ---

/// The next app-tenant change number. Every write to `app_tenants` runs this first, in its own
/// transaction, and stamps the row it changes with the number (`change_number`); a reader that
/// has seen N reads only `change_number > N` ([`APP_TENANTS_CHANGED`]).
///
/// Why a one-row counter and not a sequence: a reader must never miss a row that becomes
/// visible with a number below one it has seen. Sequence numbers are handed out at `nextval`
/// but become visible at commit, in any order (a reader sees 11, then 10 commits: lost). The
/// counter's row stays locked by this `UPDATE` until the transaction ends, so the next writer,
/// on any instance, gets N + 1 only after N's transaction is over and its row visible: numbers
/// become visible in order. The price is that app-tenant writes (rare: installs, connects,
/// MoySklad's answers) take turns. Every writer locks the counter before the tenant's row, so
/// two never wait for each other in a circle. PostgreSQL runs it READ COMMITTED (under
/// REPEATABLE READ the second writer would fail instead of waiting). SQLite has one writer at a
/// time, but still needs the number and the write in one transaction, or another process could
/// commit N + 1 between them. A write that changes no row leaves a gap, which is harmless.
pub(super) const APP_NEXT_CHANGE: &str = "UPDATE app_tenant_counter
        SET newest_change = newest_change + 1
      WHERE id = 1
  RETURNING newest_change";

/// Install / resume, in one statement. `$1` account, `$2` app, `$3` name, `$4` sealed access
/// token or NULL (keep the old one), `$5` now, `$6` change number.
pub(super) const APP_ACTIVATE: &str = concat!(
    "INSERT INTO app_tenants (account_id, app_id, account_name, state,
                              access_token_sealed, created_ms, updated_ms, change_number)
     VALUES ($1, $2, $3, 'settings_required', $4, $5, $5, $6)
     ON CONFLICT (account_id) DO UPDATE
        SET app_id = excluded.app_id, account_name = excluded.account_name,
            state = CASE WHEN app_tenants.token_sha256 IS NULL
                         THEN 'settings_required' ELSE 'activated' END,
            access_token_sealed = COALESCE(excluded.access_token_sealed,
                                           app_tenants.access_token_sealed),
            updated_ms = excluded.updated_ms, change_number = excluded.change_number
     RETURNING ",
    app_columns!()
);

/// Suspend or uninstall, SQLite: three statements in one `BEGIN IMMEDIATE` transaction (its
/// `RETURNING` cannot name the state before an update). This one reads the state before.
pub(super) const APP_STATE_SQLITE: &str = "SELECT state FROM app_tenants WHERE account_id = $1";
/// `$2` now, `$3` change number.
pub(super) const APP_UNINSTALL_SQLITE: &str = "UPDATE app_tenants
        SET state = 'uninstalled', access_token_sealed = NULL,
            credentials_sealed = NULL, token_sha256 = NULL, updated_ms = $2,
            change_number = $3
      WHERE account_id = $1";
/// `$2` now, `$3` change number.
pub(super) const APP_SUSPEND_SQLITE: &str =
    "UPDATE app_tenants SET state = 'suspended', updated_ms = $2, change_number = $3
      WHERE account_id = $1 AND state != 'uninstalled'";
/// Suspend or uninstall, PostgreSQL: one statement; the row is locked by the sub-select, so
/// the state returned is the one this update replaced. `$2` uninstall, `$3` now, `$4` change
/// number.
pub(super) const APP_DEACTIVATE_POSTGRES: &str = "UPDATE app_tenants t
        SET state = CASE WHEN $2 THEN 'uninstalled'
                         WHEN old.state = 'uninstalled' THEN old.state
                         ELSE 'suspended' END,
            access_token_sealed = CASE WHEN $2 THEN NULL ELSE t.access_token_sealed END,
            credentials_sealed = CASE WHEN $2 THEN NULL ELSE t.credentials_sealed END,
            token_sha256 = CASE WHEN $2 THEN NULL ELSE t.token_sha256 END,
            updated_ms = $3, change_number = $4
       FROM (SELECT account_id, state FROM app_tenants
              WHERE account_id = $1 FOR UPDATE) old
      WHERE t.account_id = old.account_id
  RETURNING old.state";

/// `$2` token hash, `$3` mapping, `$4` base URL, `$5` sealed credentials, `$6` settings,
/// `$7` external search, `$8` now, `$9` change number.
pub(super) const APP_CONNECT: &str = "UPDATE app_tenants
        SET token_sha256 = $2, mapping = $3, base_url = $4,
            credentials_sealed = $5, settings = $6, external_search = $7,
            updated_ms = $8, change_number = $9
      WHERE account_id = $1 AND state IN ('settings_required', 'activated')";

/// `$2` note, `$3` activated, `$4` now, `$5` change number.
pub(super) const APP_MARK: &str = "UPDATE app_tenants
        SET vendor_note = $2, updated_ms = $4, change_number = $5,
            state = CASE WHEN $3 AND token_sha256 IS NOT NULL
                          AND state IN ('settings_required', 'activated')
                         THEN 'activated' ELSE state END
      WHERE account_id = $1";

pub(super) const APP_TENANT: &str = concat!(
    "SELECT ",
    app_columns!(),
    " FROM app_tenants WHERE account_id = $1"
);

/// Every app tenant changed after `$1` (a change number; 0 for all), in the order of their
/// changes, whatever their state: a reader drops the ones no longer connected. Reads the
/// `app_tenants_changes` index, so nothing changed costs a lookup, not a scan.
pub(super) const APP_TENANTS_CHANGED: &str = concat!(
    "SELECT ",
    app_columns!(),
    " FROM app_tenants WHERE change_number > $1 ORDER BY change_number"
);

// --- app accounts' recent failures ---

/// Adds a failure of an installed account, or counts it into the one with the same source and
/// text. `$1` account, `$2` source, `$3` text, `$4` times, `$5` first, `$6` last. The casts
/// type what PostgreSQL reads in the `SELECT` list; the `WHERE` also keeps SQLite from reading
/// `ON CONFLICT` as part of the `SELECT`.
pub(super) const APP_FAILURE_ADD: &str =
    "INSERT INTO app_failures (account_id, source, text, times, first_ms, last_ms)
     SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT),
            CAST($4 AS BIGINT), CAST($5 AS BIGINT), CAST($6 AS BIGINT)
      WHERE EXISTS (SELECT 1 FROM app_tenants
                     WHERE account_id = $1 AND state <> 'uninstalled')
     ON CONFLICT (account_id, source, text) DO UPDATE
        SET times = app_failures.times + excluded.times,
            first_ms = CASE WHEN excluded.first_ms < app_failures.first_ms
                            THEN excluded.first_ms ELSE app_failures.first_ms END,
            last_ms = CASE WHEN excluded.last_ms > app_failures.last_ms
                           THEN excluded.last_ms ELSE app_failures.last_ms END";

/// Keeps the account's `$2` failures last seen, deletes the others. `$1` account.
pub(super) const APP_FAILURES_TRIM: &str = "DELETE FROM app_failures
      WHERE account_id = $1
        AND id NOT IN (SELECT id FROM app_failures WHERE account_id = $1
                        ORDER BY last_ms DESC, id DESC LIMIT $2)";

/// `$1` account, `$2` how many.
pub(super) const APP_FAILURES: &str = concat!(
    "SELECT ",
    app_failure_columns!(),
    " FROM app_failures WHERE account_id = $1 ORDER BY last_ms DESC, id DESC LIMIT $2"
);

/// An uninstalled account's failures go with its secrets. `$1` account.
pub(super) const APP_FAILURES_FORGET: &str = "DELETE FROM app_failures WHERE account_id = $1";

// --- cluster (several instances on one database) ---

/// `$1` instance, `$2` now, `$3` until.
pub(super) const HEARTBEAT: &str = "INSERT INTO instances (instance, joined_ms, beat_ms, until_ms)
     VALUES ($1, $2, $2, $3)
     ON CONFLICT (instance) DO UPDATE
        SET beat_ms = excluded.beat_ms, until_ms = excluded.until_ms";

/// `$1` now.
pub(super) const MEMBERS: &str =
    "SELECT instance, joined_ms, beat_ms FROM instances WHERE until_ms > $1 ORDER BY instance";

pub(super) const LEAVE: &str = "DELETE FROM instances WHERE instance = $1";

/// GCRA ("generic cell rate algorithm", as governor runs it in memory) on one row per tenant:
/// `tat_us` is the theoretical arrival time of the next call. A call at `now` may go at
/// `max(now, tat - tolerance)`; if that is within `$4` of now it is counted (`tat` moves on by
/// one interval) and the row comes back with the wait, else nothing changes and no row comes
/// back. On a conflict PostgreSQL locks the row and re-checks the `WHERE` on its latest
/// version, so concurrent takers queue on the row and none is counted twice. `now` is the
/// database's clock, read once. `$1` tenant, `$2` interval, `$3` tolerance, `$4` max wait,
/// `$5` burst charged as spent; microseconds. SQLite (one instance) has its own text below:
/// `GREATEST` is `MAX` there, and its clock is `unixepoch`.
pub(super) const RATE_TAKE_POSTGRES: &str = "INSERT INTO vendor_rates AS r (tenant, tat_us, now_us)
     SELECT $1, n.us + $5 + $2, n.us
       FROM (SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS us) n
      WHERE TRUE
     ON CONFLICT (tenant) DO UPDATE
        SET tat_us = GREATEST(r.tat_us, excluded.now_us + $5) + $2, now_us = excluded.now_us
      WHERE GREATEST(r.tat_us, excluded.now_us + $5) - $3 - excluded.now_us <= $4
     RETURNING GREATEST(0, tat_us - $2 - $3 - now_us)";

/// [`RATE_TAKE_POSTGRES`] in SQLite's words (`WHERE TRUE` tells its parser that `ON CONFLICT`
/// belongs to the `INSERT`, not to a join).
pub(super) const RATE_TAKE_SQLITE: &str = "INSERT INTO vendor_rates AS r (tenant, tat_us, now_us)
     SELECT $1, n.us + $5 + $2, n.us
       FROM (SELECT CAST(unixepoch('subsec') * 1000000 AS INTEGER) AS us) n
      WHERE TRUE
     ON CONFLICT (tenant) DO UPDATE
        SET tat_us = MAX(r.tat_us, excluded.now_us + $5) + $2, now_us = excluded.now_us
      WHERE MAX(r.tat_us, excluded.now_us + $5) - $3 - excluded.now_us <= $4
     RETURNING MAX(0, tat_us - $2 - $3 - now_us)";

/// After a refused take: how long until a call would go. `$1` tenant, `$2` tolerance.
pub(super) const RATE_WAIT_POSTGRES: &str =
    "SELECT r.tat_us - $2 - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)
       FROM vendor_rates r WHERE r.tenant = $1";

pub(super) const RATE_WAIT_SQLITE: &str =
    "SELECT r.tat_us - $2 - CAST(unixepoch('subsec') * 1000000 AS INTEGER)
       FROM vendor_rates r WHERE r.tenant = $1";

/// `$1` tenant, `$2` paused until, `$3` open until (each only raised). `CASE` rather than
/// `GREATEST`/`MAX`, which the two dialects spell differently.
pub(super) const VENDOR_SIGNAL: &str =
    "INSERT INTO vendor_signals (tenant, paused_until_ms, open_until_ms) VALUES ($1, $2, $3)
     ON CONFLICT (tenant) DO UPDATE
        SET paused_until_ms = CASE WHEN excluded.paused_until_ms > vendor_signals.paused_until_ms
                                   THEN excluded.paused_until_ms
                                   ELSE vendor_signals.paused_until_ms END,
            open_until_ms = CASE WHEN excluded.open_until_ms > vendor_signals.open_until_ms
                                 THEN excluded.open_until_ms
                                 ELSE vendor_signals.open_until_ms END";

/// `$1` now.
pub(super) const VENDOR_SIGNALS: &str =
    "SELECT tenant, paused_until_ms, open_until_ms FROM vendor_signals
      WHERE paused_until_ms > $1 OR open_until_ms > $1";

// --- retention ---

/// Run in this order in one transaction, each with `$1` = [`super::PruneBefore::settled_ms`],
/// then [`PRUNE_APP_FAILURES`].
pub(super) const PRUNE: [&str; 9] = [
    "DELETE FROM outbox WHERE state = 'delivered' AND updated_ms < $1",
    // A record an outbox item still points at (one refused, waiting for an operator) stays.
    "DELETE FROM records
      WHERE state IN ('done', 'failed') AND updated_ms < $1
        AND NOT EXISTS (SELECT 1 FROM outbox o
                         WHERE o.tenant = records.tenant AND o.kind = records.kind
                           AND o.id = records.id)",
    "DELETE FROM kv WHERE expires_ms < $1",
    "DELETE FROM codes WHERE expires_ms < $1",
    "DELETE FROM outbox_leases WHERE until_ms < $1",
    "DELETE FROM claims WHERE until_ms < $1",
    "DELETE FROM instances WHERE until_ms < $1",
    "DELETE FROM vendor_signals WHERE paused_until_ms < $1 AND open_until_ms < $1",
    // Rates are kept in microseconds (divided, not multiplied: no overflow at the extremes).
    "DELETE FROM vendor_rates WHERE tat_us / 1000 < $1",
];

/// The last of a prune's statements: `$1` = [`super::PruneBefore::failures_ms`].
pub(super) const PRUNE_APP_FAILURES: &str = "DELETE FROM app_failures WHERE last_ms < $1";
