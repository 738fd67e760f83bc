"""What the anchor's web app and its Celery worker share: settings and the incident's JSON."""

import os

DSN = os.environ.get("ANCHOR_DSN", "postgresql://postgres@127.0.0.1:5432/intake_anchor?sslmode=disable")
REDIS_URL = os.environ.get("ANCHOR_REDIS_URL", "redis://127.0.0.1:6379/12")
# Redis pub/sub channels are global (not per database): a run's own prefix keeps runs apart.
FEED_PREFIX = os.environ.get("ANCHOR_FEED_PREFIX", "intake-anchor:feed:")
# Bearer token the feed and the incident list take (the anchor has no accounts).
BEARER = os.environ.get("ANCHOR_BEARER", "anchor-bearer-token")
ORG_ID = os.environ.get("ANCHOR_ORG_ID", "00000000-0000-0000-0000-000000000001")
WINDOW_SECS = int(os.environ.get("ANCHOR_CORRELATION_WINDOW_SECS", "900"))
HEARTBEAT_SECS = int(os.environ.get("ANCHOR_SSE_HEARTBEAT_SECS", "15"))

SEVERITIES = ["info", "low", "medium", "high", "critical"]

INCIDENT_COLUMNS = (
    "id, org_id, title, status, severity, source, service, started_at, last_alert_at, "
    "resolved_at, rca_status, alert_count, firing_count, created_at, updated_at"
)


def incident_json(row):
    """An incident row (in INCIDENT_COLUMNS order) as the feed and the list carry it."""
    keys = [k.strip() for k in INCIDENT_COLUMNS.split(",")]
    out = {}
    for k, v in zip(keys, row):
        if hasattr(v, "isoformat"):
            v = v.isoformat()
        elif k == "org_id":
            v = str(v)
        out[k] = v
    return out
