"""The schema of the state file: append-only named migrations, oldest first.

Each runs once in its own transaction and is recorded in ``schema_migrations``
(``appliance.state.database.migrate``). Never edit one that has shipped; add the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


MIGRATIONS: Sequence[Migration] = (
    Migration(
        "0001_keys_and_requests",
        """
        CREATE TABLE api_keys (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            prefix      TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            tier        TEXT,
            source      TEXT NOT NULL CHECK (source IN ('config', 'api')),
            created_at  REAL NOT NULL,
            revoked_at  REAL
        );
        CREATE TABLE requests (
            id                TEXT PRIMARY KEY,
            key_id            TEXT,
            key_name          TEXT,
            endpoint          TEXT NOT NULL,
            route_model       TEXT,
            model             TEXT,
            backend           TEXT,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            status            TEXT NOT NULL,
            http_status       INTEGER NOT NULL,
            error_code        TEXT,
            latency_ms        REAL NOT NULL,
            ttft_ms           REAL,
            started_at        REAL NOT NULL,
            ended_at          REAL NOT NULL
        );
        CREATE INDEX requests_started_at ON requests (started_at);
        CREATE INDEX requests_key_started ON requests (key_id, started_at);
        CREATE INDEX requests_model_started ON requests (model, started_at);
        """,
    ),
    Migration(
        "0002_accounting",
        """
        ALTER TABLE api_keys ADD COLUMN models TEXT;
        ALTER TABLE api_keys ADD COLUMN budget_usd TEXT;
        ALTER TABLE api_keys ADD COLUMN budget_period TEXT;
        ALTER TABLE api_keys ADD COLUMN expires_at REAL;
        ALTER TABLE requests ADD COLUMN prompt_price TEXT NOT NULL DEFAULT '0';
        ALTER TABLE requests ADD COLUMN completion_price TEXT NOT NULL DEFAULT '0';
        ALTER TABLE requests ADD COLUMN cost_pusd INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE requests ADD COLUMN tokens_per_s REAL;
        CREATE TABLE usage_hourly (
            hour              INTEGER NOT NULL,
            key_id            TEXT NOT NULL,
            key_name          TEXT NOT NULL,
            model             TEXT NOT NULL,
            prompt_price      TEXT NOT NULL,
            completion_price  TEXT NOT NULL,
            requests          INTEGER NOT NULL DEFAULT 0,
            ok                INTEGER NOT NULL DEFAULT 0,
            errors            INTEGER NOT NULL DEFAULT 0,
            cancelled         INTEGER NOT NULL DEFAULT 0,
            rate_limited      INTEGER NOT NULL DEFAULT 0,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_pusd         INTEGER NOT NULL DEFAULT 0,
            gen_tokens        INTEGER NOT NULL DEFAULT 0,
            gen_ms            REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, key_id, model, prompt_price, completion_price)
        );
        CREATE INDEX usage_hourly_key ON usage_hourly (key_id, hour);
        CREATE TABLE latency_hourly (
            hour    INTEGER NOT NULL,
            model   TEXT NOT NULL,
            kind    TEXT NOT NULL CHECK (kind IN ('latency', 'ttft')),
            bucket  INTEGER NOT NULL,
            count   INTEGER NOT NULL,
            PRIMARY KEY (hour, model, kind, bucket)
        );
        CREATE INDEX requests_status_started ON requests (status, started_at);
        INSERT INTO usage_hourly (hour, key_id, key_name, model, prompt_price, completion_price,
            requests, ok, errors, cancelled, rate_limited, prompt_tokens, completion_tokens)
        SELECT CAST(started_at / 3600 AS INTEGER), COALESCE(key_id, ''), COALESCE(key_name, ''),
            COALESCE(model, ''), '0', '0', COUNT(*), SUM(status = 'ok'), SUM(status = 'error'),
            SUM(status = 'cancelled'), SUM(status = 'rate_limited'), SUM(prompt_tokens),
            SUM(completion_tokens)
        FROM requests GROUP BY 1, 2, 3, 4
        """,
    ),
    Migration(
        "0003_webhooks",
        """
        CREATE TABLE webhooks (
            id          TEXT PRIMARY KEY,
            url         TEXT NOT NULL,
            events      TEXT NOT NULL,
            description TEXT,
            secret      TEXT NOT NULL,
            created_at  REAL NOT NULL
        );
        CREATE TABLE webhook_deliveries (
            id              TEXT PRIMARY KEY,
            webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            event_id        TEXT NOT NULL,
            event           TEXT NOT NULL,
            payload         TEXT NOT NULL,
            status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            last_status     INTEGER,
            last_error      TEXT,
            created_at      REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            last_attempt_at REAL,
            delivered_at    REAL
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
        CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at);
        CREATE TABLE budget_alerts (
            key_id       TEXT NOT NULL,
            period_start INTEGER NOT NULL,
            threshold    INTEGER NOT NULL,
            fired_at     REAL NOT NULL,
            PRIMARY KEY (key_id, period_start, threshold)
        )
        """,
    ),
    Migration(
        "0004_deployments",
        """
        CREATE TABLE deployments (
            id            TEXT PRIMARY KEY,
            model_id      TEXT NOT NULL,
            source        TEXT,
            pricing       TEXT,
            configuration TEXT NOT NULL,
            created_at    REAL NOT NULL,
            updated_at    REAL NOT NULL
        )
        """,
    ),
    Migration(
        # A counter only writes to api_keys move (from any process: the triggers live in
        # the file), so the server reloads keys when keys change, not on every ledger commit.
        "0005_key_changes",
        """
        CREATE TABLE key_changes (n INTEGER NOT NULL);
        INSERT INTO key_changes (n) VALUES (0);
        CREATE TRIGGER key_inserted AFTER INSERT ON api_keys
            BEGIN UPDATE key_changes SET n = n + 1; END;
        CREATE TRIGGER key_updated AFTER UPDATE ON api_keys
            BEGIN UPDATE key_changes SET n = n + 1; END;
        CREATE TRIGGER key_deleted AFTER DELETE ON api_keys
            BEGIN UPDATE key_changes SET n = n + 1; END;
        """,
    ),
    Migration(
        # /v1/responses kept for `previous_response_id` and retrieval, per key, until
        # `expires_at` (server.responses_retention_days after creation).
        "0006_responses",
        """
        CREATE TABLE responses (
            id                   TEXT PRIMARY KEY,
            key_id               TEXT NOT NULL,
            previous_response_id TEXT,
            created_at           REAL NOT NULL,
            expires_at           REAL NOT NULL,
            input_items          TEXT NOT NULL,
            response             TEXT NOT NULL
        );
        CREATE INDEX responses_expires_at ON responses (expires_at);
        """,
    ),
    Migration(
        # /v1/files (the bytes live under server.files_dir), /v1/batches with one row per
        # input line (its outcome is written once, so a restart resumes where it stopped),
        # and the ledger's mark on a request that was a batch line.
        "0007_files_and_batches",
        """
        ALTER TABLE requests ADD COLUMN batch_id TEXT;
        CREATE TABLE files (
            id          TEXT PRIMARY KEY,
            key_id      TEXT NOT NULL,
            filename    TEXT NOT NULL,
            purpose     TEXT NOT NULL,
            bytes       INTEGER NOT NULL,
            sha256      TEXT NOT NULL,
            created_at  INTEGER NOT NULL,
            expires_at  INTEGER
        );
        CREATE INDEX files_key_created ON files (key_id, created_at);
        CREATE TABLE batches (
            id                TEXT PRIMARY KEY,
            key_id            TEXT NOT NULL,
            endpoint          TEXT NOT NULL,
            input_file_id     TEXT NOT NULL,
            completion_window TEXT NOT NULL,
            status            TEXT NOT NULL,
            metadata          TEXT,
            errors            TEXT,
            output_file_id    TEXT,
            error_file_id     TEXT,
            total             INTEGER NOT NULL DEFAULT 0,
            completed         INTEGER NOT NULL DEFAULT 0,
            failed            INTEGER NOT NULL DEFAULT 0,
            input_tokens      INTEGER NOT NULL DEFAULT 0,
            output_tokens     INTEGER NOT NULL DEFAULT 0,
            created_at        INTEGER NOT NULL,
            expires_at        INTEGER NOT NULL,
            in_progress_at    INTEGER,
            finalizing_at     INTEGER,
            completed_at      INTEGER,
            failed_at         INTEGER,
            expired_at        INTEGER,
            cancelling_at     INTEGER,
            cancelled_at      INTEGER
        );
        CREATE INDEX batches_key_created ON batches (key_id, created_at);
        CREATE INDEX batches_status ON batches (status);
        CREATE TABLE batch_lines (
            batch_id   TEXT NOT NULL,
            line       INTEGER NOT NULL,
            custom_id  TEXT,
            model      TEXT,
            body       TEXT,
            outcome    TEXT CHECK (outcome IN ('output', 'error')),
            result     TEXT,
            PRIMARY KEY (batch_id, line)
        );
        """,
    ),
    Migration(
        # Fine-tuning: jobs with their events and checkpoints (the trainer's files live
        # under server.files_dir), the seed's datasets (a validated fine-tune file), and
        # the LoRA adapter of an API deployment (a fine-tuned model is one).
        "0008_fine_tuning",
        """
        ALTER TABLE deployments ADD COLUMN adapter TEXT;
        ALTER TABLE deployments ADD COLUMN owner TEXT;
        CREATE TABLE fine_tuning_jobs (
            id               TEXT PRIMARY KEY,
            key_id           TEXT NOT NULL,
            model            TEXT NOT NULL,
            training_file    TEXT NOT NULL,
            validation_file  TEXT,
            status           TEXT NOT NULL,
            suffix           TEXT,
            seed             INTEGER NOT NULL,
            hyperparameters  TEXT NOT NULL,
            metadata         TEXT,
            error            TEXT,
            fine_tuned_model TEXT,
            trained_tokens   INTEGER,
            result_files     TEXT NOT NULL DEFAULT '[]',
            step             INTEGER NOT NULL DEFAULT 0,
            total_steps      INTEGER,
            last_loss        REAL,
            created_at       INTEGER NOT NULL,
            finished_at      INTEGER,
            estimated_finish INTEGER
        );
        CREATE INDEX fine_tuning_jobs_key_created ON fine_tuning_jobs (key_id, created_at);
        CREATE INDEX fine_tuning_jobs_status ON fine_tuning_jobs (status);
        CREATE TABLE fine_tuning_events (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            id         TEXT NOT NULL UNIQUE,
            job_id     TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            level      TEXT NOT NULL,
            type       TEXT NOT NULL,
            message    TEXT NOT NULL,
            data       TEXT
        );
        CREATE INDEX fine_tuning_events_job ON fine_tuning_events (job_id, seq);
        CREATE TABLE fine_tuning_checkpoints (
            id         TEXT PRIMARY KEY,
            job_id     TEXT NOT NULL,
            step       INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            metrics    TEXT NOT NULL,
            path       TEXT NOT NULL,
            UNIQUE (job_id, step)
        );
        CREATE TABLE datasets (
            id         TEXT PRIMARY KEY,
            key_id     TEXT NOT NULL,
            name       TEXT NOT NULL,
            file_id    TEXT NOT NULL,
            model      TEXT,
            status     TEXT NOT NULL,
            examples   INTEGER,
            tokens     INTEGER,
            errors     TEXT,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX datasets_key_created ON datasets (key_id, created_at);
        """,
    ),
)
