"""The original stack's alert intake as a Flask app (run under gunicorn): one request stores the
delivered alerts in PostgreSQL (psycopg2 pool) and enqueues one Celery task per stored alert,
which correlates it (tasks.py). It speaks the node's URL shapes so the same load generator
(benches/incident_intake.rs) drives both:

    POST /api/webhooks/generic/<token>   {"title", "group", "service", ...} or {"alerts": [...]}
    GET  /api/incidents?limit=&cursor=   (bearer) newest first, with next_cursor
    GET  /api/incidents/stream           (bearer) Server-Sent Events from Redis pub/sub
"""

import hashlib
import json
import time
from datetime import datetime, timezone

import psycopg2
import psycopg2.extras
import psycopg2.pool
import redis
from flask import Flask, Response, jsonify, request, stream_with_context

import common
from tasks import correlate

app = Flask(__name__)

_pool = None


def pool():
    # Made on first use in each gunicorn worker (after the fork), as a pool per process.
    global _pool
    if _pool is None:
        # As many connections as the worker has threads (gunicorn --threads 8): with fewer,
        # requests were refused ("connection pool exhausted").
        _pool = psycopg2.pool.ThreadedConnectionPool(1, 8, common.DSN)
    return _pool


def error(status, code, message):
    return jsonify({"error": {"code": code, "message": message}}), status


def authorized():
    return request.headers.get("Authorization", "") == f"Bearer {common.BEARER}"


def parse(body, received_at):
    """The generic flavour: one alert or {"alerts": [...]} (at most 500)."""
    if isinstance(body, dict) and "alerts" in body:
        items = body["alerts"]
        if not isinstance(items, list) or len(items) > 500:
            raise ValueError("alerts must be a list of at most 500")
    else:
        items = [body]
    out = []
    for a in items:
        if not isinstance(a, dict) or not isinstance(a.get("title"), str) or not a["title"].strip():
            raise ValueError("every alert needs a title")
        status = a.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise ValueError("status must be firing or resolved")
        severity = a.get("severity", "medium")
        if severity not in common.SEVERITIES:
            raise ValueError("bad severity")
        fingerprint = a.get("fingerprint") or hashlib.sha256(
            json.dumps([a["title"], a.get("service"), a.get("labels")], sort_keys=True).encode()
        ).hexdigest()
        out.append(
            {
                "fingerprint": str(fingerprint)[:200],
                "status": status,
                "severity": severity,
                "title": a["title"][:500],
                "description": a.get("description"),
                "group_key": a.get("group"),
                "service": a.get("service"),
                "labels": a.get("labels") or {},
                "payload": a,
                "started_at": a.get("started_at") or received_at,
                "received_at": received_at,
            }
        )
    return out


@app.post("/api/webhooks/<flavour>/<token>")
def deliver(flavour, token):
    if flavour != "generic":
        return error(404, "NOT_FOUND", "no such webhook")
    body = request.get_json(force=True, silent=True)
    if body is None:
        return error(400, "VALIDATION_ERROR", "the body is not JSON")
    received_at = datetime.now(timezone.utc)
    try:
        alerts = parse(body, received_at)
    except ValueError as e:
        return error(400, "VALIDATION_ERROR", str(e))
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    stored = []
    conn = pool().getconn()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT org_id FROM webhook_tokens WHERE token_hash = %s AND revoked_at IS NULL",
                (token_hash,),
            )
            row = cur.fetchone()
            if row is None:
                return error(404, "NOT_FOUND", "no such webhook")
            org_id = row[0]
            for a in alerts:
                # The alert's last known state: a replayed delivery stores nothing.
                cur.execute(
                    "INSERT INTO alert_fingerprints (org_id, source, fingerprint, status, updated_at) "
                    "VALUES (%s, 'generic', %s, %s, %s) "
                    "ON CONFLICT (org_id, source, fingerprint) DO UPDATE "
                    "SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at "
                    "WHERE alert_fingerprints.status <> EXCLUDED.status RETURNING 1",
                    (org_id, a["fingerprint"], a["status"], received_at),
                )
                if cur.fetchone() is None:
                    continue
                cur.execute(
                    "INSERT INTO incident_alerts (org_id, source, fingerprint, status, severity, title, "
                    "description, group_key, service, labels, payload, started_at, received_at) "
                    "VALUES (%s, 'generic', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (
                        org_id,
                        a["fingerprint"],
                        a["status"],
                        a["severity"],
                        a["title"],
                        a["description"],
                        a["group_key"],
                        a["service"],
                        psycopg2.extras.Json(a["labels"]),
                        psycopg2.extras.Json(a["payload"]),
                        a["started_at"],
                        a["received_at"],
                    ),
                )
                stored.append(cur.fetchone()[0])
    finally:
        pool().putconn(conn)
    # One Celery task per alert, as the original enqueues them (after the commit).
    for alert_id in stored:
        correlate.delay(alert_id)
    return jsonify({"received": len(alerts), "stored": len(stored)}), 202


@app.get("/api/incidents")
def list_incidents():
    if not authorized():
        return error(401, "UNAUTHORIZED", "bearer token required")
    limit = max(1, min(200, int(request.args.get("limit", 50))))
    cursor = request.args.get("cursor")
    conn = pool().getconn()
    try:
        with conn, conn.cursor() as cur:
            if cursor:
                cur.execute(
                    f"SELECT {common.INCIDENT_COLUMNS} FROM incidents WHERE org_id = %s AND id < %s "
                    "ORDER BY id DESC LIMIT %s",
                    (common.ORG_ID, int(cursor), limit),
                )
            else:
                cur.execute(
                    f"SELECT {common.INCIDENT_COLUMNS} FROM incidents WHERE org_id = %s "
                    "ORDER BY id DESC LIMIT %s",
                    (common.ORG_ID, limit),
                )
            rows = [common.incident_json(r) for r in cur.fetchall()]
    finally:
        pool().putconn(conn)
    next_cursor = str(rows[-1]["id"]) if len(rows) == limit else None
    return jsonify({"incidents": rows, "next_cursor": next_cursor}), 200


@app.get("/api/incidents/stream")
def stream():
    if not authorized():
        return error(401, "UNAUTHORIZED", "bearer token required")
    channel = common.FEED_PREFIX + common.ORG_ID

    def events():
        r = redis.Redis.from_url(common.REDIS_URL)
        sub = r.pubsub(ignore_subscribe_messages=True)
        sub.subscribe(channel)
        try:
            # Subscribed before the first byte goes out: the client may send once it has it.
            yield ": ready\n\n"
            last = time.monotonic()
            while True:
                m = sub.get_message(timeout=1.0)
                if m is not None:
                    data = m["data"].decode() if isinstance(m["data"], bytes) else m["data"]
                    e = json.loads(data)
                    yield f"id: {e['id']}\nevent: {e['kind']}\ndata: {data}\n\n"
                    last = time.monotonic()
                elif time.monotonic() - last >= common.HEARTBEAT_SECS:
                    yield ": heartbeat\n\n"
                    last = time.monotonic()
        finally:
            sub.close()
            r.close()

    return Response(
        stream_with_context(events()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@app.get("/health")
def health():
    return jsonify({"status": "ok"})
