/*  test_iot - the IoT pipeline as real processes on the loopback beacon:
    detector, alerts, a sensor that is a full node and a sensor that is a
    thin client publishing through the detector's node.

    The sensors' readings are noise around a baseline with anomalies
    injected at known indices. The detector must flag every injected
    reading and no normal one (checked on its "anomalies" log, read back
    with `shoal replay`, against the readings logs of both origins), raise
    one alert per anomaly, and link reading -> anomaly -> alert through
    causation ids. `alerts` shows the alerts, acknowledges one once (a
    second acknowledgement records nothing), refuses an unknown one, and
    rebuilds its state by replay after a restart. A foreign payload on the
    readings stream is skipped. */

#include "iot.pb-c.h"
#include "mesh_util.h"
#include "tap.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_RUN_TIMEOUT 60.0

static char s_mesh[64];
static char s_beacon_port[16];
static mesh_service_t s_detector = {.program = "detector"}, s_alerts = {.program = "alerts"},
                      s_sensor = {.program = "sensor"};

//  Injected anomalies: sensor s1 (a node) and s2 (a thin client).
static const char *s_inject_s1 = "25,40,77,150,151,233,299";
static const char *s_inject_s2 = "60,180";
#define S_S1_COUNT 300
#define S_S2_COUNT 200
#define S_INJECTED 9

static bool
s_start (mesh_service_t *svc, const char *const *extra)
{
    return mesh_service_start (svc, s_mesh, s_beacon_port, extra);
}

static int
s_stop (mesh_service_t *svc)
{
    return mesh_service_stop (svc, NULL);
}

static bool
s_in_list (const char *list, uint64_t index)
{
    char copy[256];
    snprintf (copy, sizeof copy, "%s", list);
    for (char *item = strtok (copy, ","); item; item = strtok (NULL, ","))
        if (strtoull (item, NULL, 10) == index)
            return true;
    return false;
}

//  `alerts list` output, or NULL.
static char *
s_alerts_list (void)
{
    const char *args[] = {"list", "--connect", s_alerts.listen, NULL};
    return mesh_output ("alerts", args, S_RUN_TIMEOUT);
}

//  How deep `shoal trace` indented the line that holds needle (two spaces
//  a level), or -1 when there is none.
static int
s_depth (const char *text, const char *needle)
{
    const char *at = text ? strstr (text, needle) : NULL;
    if (!at)
        return -1;
    const char *line = at;
    while (line > text && line[-1] != '\n')
        line--;
    int spaces = 0;
    while (line[spaces] == ' ')
        spaces++;
    return spaces / 2;
}

static int
s_lines (const char *text)
{
    int count = 0;
    for (const char *p = text; p && *p; p++)
        count += *p == '\n';
    return count;
}

typedef struct {
    zhashx_t *readings;  //  reading event id -> "SENSOR/INDEX" when injected, "" when normal
    int injected;        //  injected readings seen
    int normal;          //  normal readings seen
    zhashx_t *anomalies; //  anomaly event id -> "SENSOR/INDEX"
    int flagged_right;   //  anomalies of injected readings, caused by them
    int flagged_wrong;   //  anomalies of normal or unknown readings
    int alerts;          //  AlertTriggered events
    int alerts_linked;   //  ... caused by an anomaly of the same reading
    int acks;            //  AlertAcknowledged events
} s_audit_t;

static void
s_on_reading (void *arg, json_t *event, const uint8_t *payload, size_t size)
{
    s_audit_t *audit = (s_audit_t *) arg;
    Iot__V1__Reading *reading = payload ? iot__v1__reading__unpack (NULL, size, payload) : NULL;
    if (!reading)
        return;
    char name[200] = "";
    bool expected =
        s_in_list (streq (reading->sensor_id, "s1") ? s_inject_s1 : s_inject_s2, reading->index);
    if (reading->injected && expected) {
        snprintf (name, sizeof name, "%s/%llu", reading->sensor_id,
                  (unsigned long long) reading->index);
        audit->injected++;
    }
    else
        audit->normal++;
    zhashx_update (audit->readings, json_get_string (event, "id"), strdup (name));
    iot__v1__reading__free_unpacked (reading, NULL);
}

static void
s_on_anomaly (void *arg, json_t *event, const uint8_t *payload, size_t size)
{
    s_audit_t *audit = (s_audit_t *) arg;
    Iot__V1__AnomalyDetected *anomaly =
        payload ? iot__v1__anomaly_detected__unpack (NULL, size, payload) : NULL;
    if (!anomaly)
        return;
    const char *cause = json_get_string (event, "causation_id");
    const char *reading = (const char *) zhashx_lookup (audit->readings, cause ? cause : "");
    char name[200];
    snprintf (name, sizeof name, "%s/%llu", anomaly->sensor_id,
              (unsigned long long) anomaly->index);
    if (reading && streq (reading, name) && streq (anomaly->reading_id, cause)
        && streq (json_get_string (event, "correlation_id"), name))
        audit->flagged_right++;
    else {
        audit->flagged_wrong++;
        diag ("flagged %s (value %.3f, score %.1f), not an injected anomaly", name, anomaly->value,
              anomaly->score);
    }
    zhashx_update (audit->anomalies, json_get_string (event, "id"), strdup (name));
    iot__v1__anomaly_detected__free_unpacked (anomaly, NULL);
}

static void
s_on_alert (void *arg, json_t *event, const uint8_t *payload, size_t size)
{
    s_audit_t *audit = (s_audit_t *) arg;
    const char *type = json_get_string (event, "type");
    if (type && streq (type, "AlertAcknowledged")) {
        audit->acks++;
        return;
    }
    Iot__V1__AlertTriggered *alert =
        payload ? iot__v1__alert_triggered__unpack (NULL, size, payload) : NULL;
    if (!alert)
        return;
    audit->alerts++;
    const char *cause = json_get_string (event, "causation_id");
    const char *anomaly = (const char *) zhashx_lookup (audit->anomalies, cause ? cause : "");
    char name[200];
    snprintf (name, sizeof name, "%s/%llu", alert->sensor_id, (unsigned long long) alert->index);
    audit->alerts_linked += anomaly && streq (anomaly, name);
    iot__v1__alert_triggered__free_unpacked (alert, NULL);
}

int
main (void)
{
    plan_lazy ();
    zsys_init ();
    zsys_handler_set (NULL);
    snprintf (s_mesh, sizeof s_mesh, "iot-test-%d", (int) getpid ());
    snprintf (s_beacon_port, sizeof s_beacon_port, "%d", 40000 + (int) (getpid () % 20000));
    double started = tap_now ();

    const char *sensor_args[] = {"--sensor-id", "s1",  "--rate",   "500",       "--count", "300",
                                 "--noise",     "2.0", "--inject", s_inject_s1, NULL};
    bool up = s_start (&s_detector, NULL) && s_start (&s_alerts, NULL)
              && s_start (&s_sensor, sensor_args);
    ok (up, "detector, alerts and a sensor node started on the loopback beacon");
    if (!up)
        return done_testing ();
    char line[4096];
    ok (mesh_wait_line (s_sensor.proc, "sensor: 300 readings published", line, sizeof line, 30)
            == 0,
        "the sensor node published its 300 readings");
    const char *thin[] = {mesh_bin ("sensor"),
                          "--through",
                          s_detector.router,
                          "--sensor-id",
                          "s2",
                          "--rate",
                          "500",
                          "--count",
                          "200",
                          "--noise",
                          "2.0",
                          "--inject",
                          s_inject_s2,
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = mesh_run (thin, NULL, NULL, S_RUN_TIMEOUT, &out, &err);
    ok (rc == 0 && tap_contains (out, "200 readings published through"),
        "a thin-client sensor published 200 readings through the detector's node");
    if (rc)
        diag ("thin sensor: %s", err);
    free (out);
    free (err);

    //  A foreign payload on the readings stream.
    const char *pub[] = {mesh_bin ("shoal"), "--node",         s_detector.router, "pub", "readings",
                         "Reading",          "--json-payload", "{\"x\":\"y\"}",   NULL};
    is_int (mesh_run (pub, NULL, NULL, S_RUN_TIMEOUT, NULL, NULL), 0,
            "a foreign Reading is published on the readings stream");

    double deadline = tap_now () + 60;
    char *list = NULL;
    while (tap_now () < deadline) {
        free (list);
        list = s_alerts_list ();
        if (s_lines (list) >= S_INJECTED)
            break;
        usleep (200000);
    }
    is_int (s_lines (list), S_INJECTED, "alerts shows one alert per injected anomaly");
    ok (tap_contains (list, "alert-s1-25 s1 ") && tap_contains (list, "alert-s2-180 s2 ")
            && tap_contains (list, " open "),
        "the alerts name their sensor and reading and are open");
    free (list);
    usleep (500000);
    mesh_drain (s_alerts.proc);
    ok (tap_contains (s_alerts.proc->out, "ALERT alert-s1-77 s1 "),
        "alerts prints each alert as it comes");

    //  The logs: every injected reading flagged, no normal one; causation links.
    s_audit_t audit = {0};
    audit.readings = zhashx_new ();
    zhashx_set_destructor (audit.readings, (zhashx_destructor_fn *) zstr_free);
    audit.anomalies = zhashx_new ();
    zhashx_set_destructor (audit.anomalies, (zhashx_destructor_fn *) zstr_free);
    bool read = mesh_replay_json (s_sensor.router, s_sensor.id, "readings", S_RUN_TIMEOUT,
                                  s_on_reading, &audit)
                && mesh_replay_json (s_detector.router, s_detector.id, "readings", S_RUN_TIMEOUT,
                                     s_on_reading, &audit)
                && mesh_replay_json (s_detector.router, s_detector.id, "anomalies", S_RUN_TIMEOUT,
                                     s_on_anomaly, &audit)
                && mesh_replay_json (s_detector.router, s_detector.id, "alerts", S_RUN_TIMEOUT,
                                     s_on_alert, &audit);
    ok (read, "the readings, anomalies and alerts logs are read back with shoal replay");
    ok (audit.injected == S_INJECTED && audit.normal == S_S1_COUNT + S_S2_COUNT - S_INJECTED,
        "the readings logs hold %d injected and %d normal readings of both sensors", audit.injected,
        audit.normal);
    is_int (audit.flagged_right, S_INJECTED,
            "every injected anomaly was flagged, caused by and correlated with its reading");
    is_int (audit.flagged_wrong, 0, "no normal reading was flagged");
    ok (audit.alerts == S_INJECTED && audit.alerts_linked == S_INJECTED,
        "one AlertTriggered per anomaly, caused by it (%d of %d)", audit.alerts_linked,
        audit.alerts);

    //  Acknowledging.
    const char *ack[] = {mesh_bin ("alerts"), "ack",  "--connect", s_alerts.listen,
                         "alert-s1-40",       "--by", "ops",       NULL};
    out = NULL;
    rc = mesh_run (ack, NULL, NULL, S_RUN_TIMEOUT, &out, NULL);
    ok (rc == 0 && tap_contains (out, "alert-s1-40 s1 ")
            && tap_contains (out, "acknowledged by=ops"),
        "alerts ack acknowledges an alert");
    free (out);
    rc = mesh_run (ack, NULL, NULL, S_RUN_TIMEOUT, NULL, NULL);
    is_int (rc, 0, "acknowledging it again is fine");
    const char *unknown[] = {mesh_bin ("alerts"), "ack",        "--connect",
                             s_alerts.listen,     "alert-none", NULL};
    err = NULL;
    rc = mesh_run (unknown, NULL, NULL, S_RUN_TIMEOUT, NULL, &err);
    ok (rc == 1 && tap_contains (err, "unknown alert"), "an unknown alert is refused");
    free (err);
    s_audit_t acks = {0};
    acks.anomalies = zhashx_new ();
    mesh_replay_json (s_alerts.router, s_alerts.id, "alerts", S_RUN_TIMEOUT, s_on_alert, &acks);
    is_int (acks.acks, 1, "two acknowledgements recorded one AlertAcknowledged");
    zhashx_destroy (&acks.anomalies);

    //  One reading traced across the sensor, the detector and the desk.
    const char *trace[] = {mesh_bin ("shoal"), "--node", s_alerts.router, "trace", "s1/40", NULL};
    out = NULL;
    rc = mesh_run (trace, NULL, NULL, S_RUN_TIMEOUT, &out, NULL);
    ok (rc == 0 && tap_contains (out, "4 event(s)") && s_depth (out, " Reading ") == 0
            && s_depth (out, " AnomalyDetected ") == 1 && s_depth (out, " AlertTriggered ") == 2
            && s_depth (out, " AlertAcknowledged ") == 3,
        "shoal trace s1/40: reading, anomaly, alert and acknowledgement, each under its cause");
    if (rc || !tap_contains (out, "4 event(s)"))
        diag ("trace: %s", out);
    free (out);

    //  Restart: the desk rebuilds by replay.
    is_int (s_stop (&s_alerts), 0, "alerts stops cleanly");
    bool back = s_start (&s_alerts, NULL);
    list = NULL;
    deadline = tap_now () + 30;
    while (back && tap_now () < deadline) {
        free (list);
        list = s_alerts_list ();
        if (s_lines (list) >= S_INJECTED && tap_contains (list, "acknowledged by=ops"))
            break;
        usleep (200000);
    }
    ok (back && s_lines (list) == S_INJECTED && tap_contains (list, "acknowledged by=ops"),
        "after a restart alerts rebuilt every alert and the acknowledgement by replay");
    free (list);

    err = mesh_stderr (s_detector.proc);
    ok (tap_contains (err, "skipped ") && tap_contains (err, "is not a iot.v1.Reading"),
        "the detector skipped the foreign payload with a message");
    free (err);
    mesh_service_t *all[] = {&s_sensor, &s_alerts, &s_detector};
    int stops = 0;
    for (int i = 0; i < 3; i++)
        stops += s_stop (all[i]) == 0;
    is_int (stops, 3, "every process stops cleanly on SIGTERM");
    zhashx_destroy (&audit.readings);
    zhashx_destroy (&audit.anomalies);
    diag ("test_iot took %.1f s", tap_now () - started);
    return done_testing ();
}
