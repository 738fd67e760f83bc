-- The original stack's alert intake, reduced to what the benchmark touches: webhook tokens,
-- each alert's last known state (replays store nothing), the alerts, the incidents they are
-- placed into, and the feed's stored events. Created in a fresh database by
-- benches/incident_intake.sh.

CREATE TABLE webhook_tokens (
    token_hash  text PRIMARY KEY,          -- SHA-256 of the token, hex
    org_id      uuid NOT NULL,
    revoked_at  timestamptz
);

CREATE TABLE alert_fingerprints (
    org_id      uuid NOT NULL,
    source      text NOT NULL,
    fingerprint text NOT NULL,
    status      text NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, source, fingerprint)
);

CREATE TABLE incidents (
    id            bigserial PRIMARY KEY,
    org_id        uuid NOT NULL,
    title         text NOT NULL,
    status        text NOT NULL,            -- investigating | analyzed | resolved | dismissed
    severity      text NOT NULL,
    source        text NOT NULL,
    service       text,
    group_key     text,
    started_at    timestamptz NOT NULL,
    last_alert_at timestamptz NOT NULL,
    resolved_at   timestamptz,
    rca_status    text NOT NULL,
    alert_count   integer NOT NULL DEFAULT 0,
    firing_count  integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX incidents_open_group ON incidents (org_id, group_key, last_alert_at DESC);
CREATE INDEX incidents_open_service ON incidents (org_id, service, last_alert_at DESC);

CREATE TABLE incident_alerts (
    id          bigserial PRIMARY KEY,
    org_id      uuid NOT NULL,
    source      text NOT NULL,
    fingerprint text NOT NULL,
    status      text NOT NULL,
    severity    text NOT NULL,
    title       text NOT NULL,
    description text,
    group_key   text,
    service     text,
    labels      jsonb NOT NULL DEFAULT '{}',
    payload     jsonb NOT NULL,
    started_at  timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    incident_id bigint REFERENCES incidents (id),
    placed_at   timestamptz
);
CREATE INDEX incident_alerts_incident ON incident_alerts (incident_id);
CREATE INDEX incident_alerts_fingerprint ON incident_alerts (org_id, source, fingerprint);

CREATE TABLE incident_events (
    id          bigserial PRIMARY KEY,
    org_id      uuid NOT NULL,
    incident_id bigint NOT NULL REFERENCES incidents (id),
    kind        text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX incident_events_org ON incident_events (org_id, id);
