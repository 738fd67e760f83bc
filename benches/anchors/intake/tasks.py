"""The original stack's correlation: one Celery task per stored alert (Redis broker). It places
the alert into the open incident of the same group or service whose last alert is within the
window, else opens one; updates the counts; stores a feed event in the same transaction; then
publishes it on Redis pub/sub. Tasks of one org are serialized by a transaction lock (as the
node's correlator is), so two worker processes never open two incidents for one group.

    celery -A tasks worker --concurrency <cores> --loglevel warning
"""

import json

import psycopg2
import redis
from celery import Celery

import common

app = Celery("intake_anchor", broker=common.REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_conn = None
_redis = None


def conn():
    # One connection per worker child, kept (children are reused: the tuned configuration).
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(common.DSN)
    return _conn


def rds():
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(common.REDIS_URL)
    return _redis


def worse(a, b):
    return a if common.SEVERITIES.index(a) >= common.SEVERITIES.index(b) else b


@app.task(name="intake.correlate")
def correlate(alert_id):
    c = conn()
    event = None
    with c, c.cursor() as cur:
        cur.execute(
            "SELECT org_id, status, severity, title, group_key, service, fingerprint, source, "
            "started_at, received_at FROM incident_alerts WHERE id = %s AND placed_at IS NULL",
            (alert_id,),
        )
        row = cur.fetchone()
        if row is None:
            return
        org_id, status, severity, title, group_key, service, fingerprint, source, started_at, received_at = row
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"intake-anchor:correlate:{org_id}",)
        )
        # Placed meanwhile by another task of the same alert?
        cur.execute("SELECT placed_at FROM incident_alerts WHERE id = %s", (alert_id,))
        if cur.fetchone()[0] is not None:
            return
        change = "updated"
        if status == "resolved":
            # The newest open incident holding this alert, whatever the window.
            cur.execute(
                "SELECT i.id, i.severity FROM incidents i JOIN incident_alerts a ON a.incident_id = i.id "
                "WHERE i.org_id = %s AND i.status IN ('investigating', 'analyzed') "
                "AND a.source = %s AND a.fingerprint = %s ORDER BY i.last_alert_at DESC LIMIT 1",
                (org_id, source, fingerprint),
            )
        else:
            cur.execute(
                "SELECT id, severity FROM incidents WHERE org_id = %s "
                "AND status IN ('investigating', 'analyzed') "
                "AND last_alert_at >= %s - make_interval(secs => %s) "
                "AND (group_key = %s OR service = %s) ORDER BY last_alert_at DESC LIMIT 1",
                (org_id, received_at, common.WINDOW_SECS, group_key, service),
            )
        found = cur.fetchone()
        if found is None and status == "resolved":
            cur.execute("UPDATE incident_alerts SET placed_at = now() WHERE id = %s", (alert_id,))
            return
        if found is None:
            change = "created"
            cur.execute(
                "INSERT INTO incidents (org_id, title, status, severity, source, service, group_key, "
                "started_at, last_alert_at, rca_status, alert_count, firing_count, created_at, updated_at) "
                "VALUES (%s, %s, 'investigating', %s, %s, %s, %s, LEAST(%s, %s), %s, 'queued', 1, 1, now(), now()) "
                f"RETURNING {common.INCIDENT_COLUMNS}",
                (org_id, title, severity, source, service, group_key, started_at, received_at, received_at),
            )
        elif status == "firing":
            cur.execute(
                "UPDATE incidents SET alert_count = alert_count + 1, firing_count = firing_count + 1, "
                "last_alert_at = GREATEST(last_alert_at, %s), severity = %s, updated_at = now() "
                f"WHERE id = %s RETURNING {common.INCIDENT_COLUMNS}",
                (received_at, worse(found[1], severity), found[0]),
            )
        else:
            cur.execute(
                "UPDATE incidents SET alert_count = alert_count + 1, "
                "firing_count = GREATEST(firing_count - 1, 0), updated_at = now(), "
                "status = CASE WHEN firing_count <= 1 THEN 'resolved' ELSE status END, "
                "resolved_at = CASE WHEN firing_count <= 1 THEN now() ELSE resolved_at END "
                f"WHERE id = %s RETURNING {common.INCIDENT_COLUMNS}",
                (found[0],),
            )
        incident = common.incident_json(cur.fetchone())
        if incident["status"] == "resolved" and change == "updated":
            change = "resolved"
        incident["change"] = change
        cur.execute(
            "UPDATE incident_alerts SET incident_id = %s, placed_at = now() WHERE id = %s",
            (incident["id"], alert_id),
        )
        cur.execute(
            "INSERT INTO incident_events (org_id, incident_id, kind, data, created_at) "
            "VALUES (%s, %s, 'incident', %s, now()) RETURNING id, created_at",
            (org_id, incident["id"], json.dumps(incident)),
        )
        event_id, created_at = cur.fetchone()
        event = {
            "id": event_id,
            "incident_id": incident["id"],
            "kind": "incident",
            "data": incident,
            "created_at": created_at.isoformat(),
        }
    # Published after the commit, as the node does.
    rds().publish(common.FEED_PREFIX + str(org_id), json.dumps(event))
