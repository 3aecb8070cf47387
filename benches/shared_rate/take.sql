-- pgbench script: one shared vendor-rate take (src/store/sql.rs RATE_TAKE_POSTGRES) with a
-- rate that never refuses (1 µs interval, 1,000 s of tolerance), so every run measures the
-- statement itself: the round trip, the row lock, the update. :tenants spreads the takes over
-- that many rows (1: every instance on one hot tenant). See benches/README.md.
\set t random(1, :tenants)
INSERT INTO vendor_rates AS r (tenant, tat_us, now_us)
     SELECT 'tenant-' || :t, n.us + 0 + 1, n.us
       FROM (SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS us) n
      WHERE TRUE
     ON CONFLICT (tenant) DO UPDATE
        SET tat_us = GREATEST(r.tat_us, excluded.now_us + 0) + 1, now_us = excluded.now_us
      WHERE GREATEST(r.tat_us, excluded.now_us + 0) - 1000000000 - excluded.now_us <= 1000000000
     RETURNING GREATEST(0, tat_us - 1 - 1000000000 - now_us);
