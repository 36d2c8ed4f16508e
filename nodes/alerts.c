/*  =========================================================================
    alerts - the IoT pipeline's alert desk: shows and acknowledges alerts

    Follows stream "alerts" from the beginning (every origin): prints each
    AlertTriggered as it arrives ("ALERT id sensor severity message") and
    each AlertAcknowledged ("ACK id by"). Its state, the alerts and whether
    they were acknowledged, is rebuilt by that replay at every start; an
    acknowledgement (from this desk's own log) may come before its alert
    (from the detector's), so either can make the entry.

    On its ROUTER (--listen; `alerts list` and `alerts ack` are the
    command-line clients) it lists the alerts and acknowledges one: it
    records AlertAcknowledged on stream "alerts", caused by the alert and
    correlated with it, and answers once that is durable. Acknowledging
    twice records nothing new.

        alerts --data DIR --listen ENDPOINT [common options]
        alerts list (--connect ENDPOINT | --data DIR)
        alerts ack (--connect ENDPOINT | --data DIR) ALERT_ID [--by NAME]
    ========================================================================= */

#include "iot.pb-c.h"
#include "service.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PROGRAM "alerts"

typedef struct {
    char *sensor_id;      //  from AlertTriggered
    char *severity;       //  from AlertTriggered
    char *message;        //  from AlertTriggered
    char event_id[33];    //  id of the AlertTriggered event
    char *correlation_id; //  of the AlertTriggered event
    bool triggered;       //  its AlertTriggered was seen
    bool acknowledged;    //  an AlertAcknowledged was seen or recorded
    char *by;             //  who acknowledged it
} s_alert_t;

typedef struct {
    service_t *service; //  node and loop
    zhashx_t *alerts;   //  alert id -> s_alert_t
    const char *name;   //  this desk's name, default acknowledger
} s_desk_t;

static void
s_alert_free (void **item_p)
{
    s_alert_t *alert = (s_alert_t *) *item_p;
    if (alert) {
        free (alert->sensor_id);
        free (alert->severity);
        free (alert->message);
        free (alert->correlation_id);
        free (alert->by);
        free (alert);
        *item_p = NULL;
    }
}

//  The alert of alert_id, made when new: the streams of different origins
//  interleave, so an acknowledgement can come before its alert.
static s_alert_t *
s_alert (s_desk_t *self, const char *alert_id)
{
    s_alert_t *alert = (s_alert_t *) zhashx_lookup (self->alerts, alert_id);
    if (!alert) {
        alert = (s_alert_t *) calloc (1, sizeof (s_alert_t));
        alert->sensor_id = strdup ("");
        alert->severity = strdup ("");
        alert->message = strdup ("");
        alert->correlation_id = strdup ("");
        alert->by = strdup ("");
        zhashx_insert (self->alerts, alert_id, alert);
    }
    return alert;
}

static void
s_replace (char **field, const char *value)
{
    free (*field);
    *field = strdup (value);
}

static void
s_handle (void *arg, int subscription, const shoal_event_t *event)
{
    (void) subscription;
    s_desk_t *self = (s_desk_t *) arg;
    const char *type = shoal_event_type (event);
    if (streq (type, "AlertTriggered")) {
        Iot__V1__AlertTriggered *triggered = (Iot__V1__AlertTriggered *) service_unpack (
            S_PROGRAM, &iot__v1__alert_triggered__descriptor, event);
        if (!triggered)
            return;
        s_alert_t *alert = *triggered->alert_id ? s_alert (self, triggered->alert_id) : NULL;
        if (alert && !alert->triggered) {
            alert->triggered = true;
            s_replace (&alert->sensor_id, triggered->sensor_id);
            s_replace (&alert->severity, triggered->severity);
            s_replace (&alert->message, triggered->message);
            s_replace (&alert->correlation_id, shoal_event_correlation_id (event));
            service_event_id (event, alert->event_id);
            printf ("ALERT %s %s %s %s\n", triggered->alert_id, triggered->sensor_id,
                    triggered->severity, triggered->message);
            fflush (stdout);
        }
        iot__v1__alert_triggered__free_unpacked (triggered, NULL);
    }
    else if (streq (type, "AlertAcknowledged")) {
        Iot__V1__AlertAcknowledged *acked = (Iot__V1__AlertAcknowledged *) service_unpack (
            S_PROGRAM, &iot__v1__alert_acknowledged__descriptor, event);
        if (!acked)
            return;
        s_alert_t *alert = *acked->alert_id ? s_alert (self, acked->alert_id) : NULL;
        if (alert && !alert->acknowledged) {
            alert->acknowledged = true;
            s_replace (&alert->by, acked->by);
            printf ("ACK %s %s\n", acked->alert_id, acked->by);
            fflush (stdout);
        }
        iot__v1__alert_acknowledged__free_unpacked (acked, NULL);
    }
}

static void
s_fill (Iot__V1__AlertState *state, const char *alert_id, s_alert_t *alert)
{
    iot__v1__alert_state__init (state);
    state->alert_id = (char *) alert_id;
    state->sensor_id = alert->sensor_id;
    state->severity = alert->severity;
    state->message = alert->message;
    state->acknowledged = alert->acknowledged;
    state->by = alert->by;
}

static int
s_request (void *arg, const uint8_t *data, size_t size, uint8_t **reply_p, size_t *reply_size_p)
{
    s_desk_t *self = (s_desk_t *) arg;
    Iot__V1__AlertRequest *request = iot__v1__alert_request__unpack (NULL, size, data);
    Iot__V1__AlertReply reply = IOT__V1__ALERT_REPLY__INIT;
    reply.request_id = request ? request->request_id : 0;
    if (!request) {
        reply.error = "bad request: not an iot.v1.AlertRequest";
        *reply_p = service_pack (&reply.base, reply_size_p);
        return 0;
    }
    size_t count = zhashx_size (self->alerts);
    Iot__V1__AlertState *states =
        (Iot__V1__AlertState *) calloc (count ? count : 1, sizeof (Iot__V1__AlertState));
    Iot__V1__AlertState **pointers =
        (Iot__V1__AlertState **) calloc (count ? count : 1, sizeof (Iot__V1__AlertState *));
    if (*request->ack_alert_id) {
        s_alert_t *alert = (s_alert_t *) zhashx_lookup (self->alerts, request->ack_alert_id);
        if (!alert || !alert->triggered)
            reply.error = "unknown alert";
        else {
            if (!alert->acknowledged) {
                const char *by = *request->by ? request->by : self->name;
                Iot__V1__AlertAcknowledged acked = IOT__V1__ALERT_ACKNOWLEDGED__INIT;
                acked.alert_id = request->ack_alert_id;
                acked.by = (char *) by;
                if (service_emit (self->service, "alerts", "AlertAcknowledged", alert->sensor_id,
                                  alert->correlation_id, alert->event_id, 1, &acked.base, NULL,
                                  NULL))
                    reply.error = "storage failure";
                else {
                    alert->acknowledged = true;
                    free (alert->by);
                    alert->by = strdup (by);
                }
            }
            s_fill (&states[0], request->ack_alert_id, alert);
            pointers[0] = &states[0];
            reply.n_alerts = 1;
        }
    }
    else
        for (s_alert_t *alert = (s_alert_t *) zhashx_first (self->alerts);
             alert && reply.n_alerts < count; alert = (s_alert_t *) zhashx_next (self->alerts)) {
            if (!alert->triggered)
                continue;
            s_fill (&states[reply.n_alerts], (const char *) zhashx_cursor (self->alerts), alert);
            pointers[reply.n_alerts] = &states[reply.n_alerts];
            reply.n_alerts++;
        }
    reply.alerts = pointers;
    *reply_p = service_pack (&reply.base, reply_size_p);
    free (states);
    free (pointers);
    iot__v1__alert_request__free_unpacked (request, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  alerts list / alerts ack: the command-line clients

static int
s_compare (const void *a, const void *b)
{
    return strcmp ((*(Iot__V1__AlertState *const *) a)->alert_id,
                   (*(Iot__V1__AlertState *const *) b)->alert_id);
}

static void
s_client_reply (void *arg, const uint8_t *data, size_t size)
{
    int *status = (int *) arg;
    Iot__V1__AlertReply *reply = iot__v1__alert_reply__unpack (NULL, size, data);
    if (!reply || *reply->error) {
        fprintf (stderr, "alerts: %s\n", reply ? reply->error : "the reply is not an AlertReply");
        *status = 1;
    }
    else {
        qsort (reply->alerts, reply->n_alerts, sizeof reply->alerts[0], s_compare);
        for (size_t i = 0; i < reply->n_alerts; i++) {
            Iot__V1__AlertState *alert = reply->alerts[i];
            printf ("%s %s %s %s%s%s \"%s\"\n", alert->alert_id, alert->sensor_id, alert->severity,
                    alert->acknowledged ? "acknowledged" : "open",
                    alert->acknowledged ? " by=" : "", alert->acknowledged ? alert->by : "",
                    alert->message);
        }
    }
    if (reply)
        iot__v1__alert_reply__free_unpacked (reply, NULL);
}

static int
s_client_main (int argc, char **argv)
{
    bool ack = streq (argv[1], "ack");
    const char *endpoint = NULL, *data_dir = NULL, *alert_id = NULL, *by = "";
    for (int i = 2; i < argc; i++) {
        if (streq (argv[i], "--connect") && i + 1 < argc)
            endpoint = argv[++i];
        else if (streq (argv[i], "--data") && i + 1 < argc)
            data_dir = argv[++i];
        else if (ack && streq (argv[i], "--by") && i + 1 < argc)
            by = argv[++i];
        else if (ack && argv[i][0] != '-' && !alert_id)
            alert_id = argv[i];
        else {
            alert_id = NULL;
            ack = true;
            break;
        }
    }
    if (ack && !alert_id) {
        fprintf (stderr, "usage: alerts list (--connect ENDPOINT | --data DIR)\n"
                         "       alerts ack (--connect ENDPOINT | --data DIR) ALERT_ID [--by "
                         "NAME]\n");
        return 2;
    }
    char *target = service_client_endpoint (endpoint, data_dir);
    if (!target)
        return 1;
    Iot__V1__AlertRequest request = IOT__V1__ALERT_REQUEST__INIT;
    request.request_id = 1;
    request.ack_alert_id = ack ? (char *) alert_id : "";
    request.by = (char *) by;
    size_t size = 0;
    uint8_t *data = service_pack (&request.base, &size);
    int status = 0;
    if (service_client_requests (target, &data, &size, 1, 1, 0, 5000, s_client_reply, &status))
        status = 1;
    free (data);
    free (target);
    return status;
}

int
main (int argc, char **argv)
{
    if (argc > 1 && (streq (argv[1], "list") || streq (argv[1], "ack")))
        return s_client_main (argc, argv);
    service_config_t config = {
        .program = S_PROGRAM,
        .usage = "       alerts list (--connect ENDPOINT | --data DIR)\n"
                 "       alerts ack (--connect ENDPOINT | --data DIR) ALERT_ID [--by NAME]"};
    config.listen = "tcp://127.0.0.1:*";
    service_parse (&config, argc, argv, NULL, NULL);
    s_desk_t self = {0};
    self.name = config.name;
    self.alerts = zhashx_new ();
    zhashx_set_destructor (self.alerts, s_alert_free);
    self.service = service_new (&config);
    if (!self.service) {
        zhashx_destroy (&self.alerts);
        return 1;
    }
    shoal_from_t from = {.kind = SHOAL_FROM_BEGINNING};
    shoal_node_subscribe (service_node (self.service), "alerts", NULL, &from);
    int rc = service_run (self.service, s_handle, s_request, NULL, &self);
    service_destroy (&self.service);
    zhashx_destroy (&self.alerts);
    return rc ? 1 : 0;
}
