/*  =========================================================================
    detector - the IoT pipeline's anomaly detector

    A durable consumer of Reading events (stream "readings", any sensor,
    any origin, full-node sensors and thin clients alike). Per sensor it
    keeps a rolling window of the last --window normal readings; once it
    holds --warmup of them, a reading whose z-score against the window's
    mean and standard deviation reaches --z is an anomaly (with
    --threshold V instead: a reading above V is one). An anomaly does not
    enter the window, so a burst of them cannot become the new normal.

    For each anomaly it records AnomalyDetected on stream "anomalies"
    (caused by the reading) and AlertTriggered on stream "alerts" (caused
    by the anomaly), both correlated with the reading ("SENSOR/INDEX").
    At start it folds its own "anomalies" log into the set of readings
    already flagged, so a redelivered reading raises no second alert. The
    windows live in memory: after a restart a sensor's window warms up
    again before that sensor is judged.

        detector --data DIR [--window N] [--warmup N] [--z Z] [--threshold V]
                 [--min-stddev S] [common options]
    ========================================================================= */

#include "iot.pb-c.h"
#include "service.h"

#include <czmq.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PROGRAM "detector"
#define S_WINDOW_MAX 1024

typedef struct {
    double values[S_WINDOW_MAX]; //  ring of the last normal readings
    size_t count;                //  values held (<= window)
    size_t next;                 //  where the next value goes
} s_window_t;

typedef struct {
    size_t window;     //  --window
    size_t warmup;     //  --warmup
    double z;          //  --z
    double threshold;  //  --threshold, NAN when not given
    double min_stddev; //  --min-stddev: floor of the standard deviation
} s_options_t;

typedef struct {
    service_t *service;  //  node and loop
    s_options_t options; //  settings
    zhashx_t *windows;   //  sensor id -> s_window_t
    zhashx_t *flagged;   //  "SENSOR/INDEX" of readings already flagged -> ""
    uint64_t readings;   //  readings judged
    uint64_t anomalies;  //  anomalies found
} s_detector_t;

static void
s_fold (void *arg, const shoal_event_t *event)
{
    s_detector_t *self = (s_detector_t *) arg;
    if (streq (shoal_event_type (event), "AnomalyDetected"))
        zhashx_update (self->flagged, shoal_event_correlation_id (event), "");
}

static void
s_stats (const s_window_t *window, double *mean, double *stddev)
{
    double sum = 0, squares = 0;
    for (size_t i = 0; i < window->count; i++)
        sum += window->values[i];
    *mean = sum / (double) window->count;
    for (size_t i = 0; i < window->count; i++)
        squares += (window->values[i] - *mean) * (window->values[i] - *mean);
    *stddev = sqrt (squares / (double) window->count);
}

static void
s_flag (s_detector_t *self, const shoal_event_t *event, Iot__V1__Reading *reading, double mean,
        double stddev, double score)
{
    char reading_id[33], anomaly_id[33], correlation[200], alert_id[256], message[256];
    service_event_id (event, reading_id);
    snprintf (correlation, sizeof correlation, "%s",
              *shoal_event_correlation_id (event) ? shoal_event_correlation_id (event) : "");
    if (!*correlation)
        snprintf (correlation, sizeof correlation, "%s/%llu", reading->sensor_id,
                  (unsigned long long) reading->index);
    Iot__V1__AnomalyDetected anomaly = IOT__V1__ANOMALY_DETECTED__INIT;
    anomaly.sensor_id = reading->sensor_id;
    anomaly.index = reading->index;
    anomaly.value = reading->value;
    anomaly.mean = mean;
    anomaly.stddev = stddev;
    anomaly.score = score;
    anomaly.reading_id = reading_id;
    if (service_emit (self->service, "anomalies", "AnomalyDetected", reading->sensor_id,
                      correlation, reading_id, 1, &anomaly.base, anomaly_id, NULL))
        return;
    snprintf (alert_id, sizeof alert_id, "alert-%s-%llu", reading->sensor_id,
              (unsigned long long) reading->index);
    snprintf (message, sizeof message, "reading %llu of %s is %.3f (mean %.3f, score %.1f)",
              (unsigned long long) reading->index, reading->sensor_id, reading->value, mean, score);
    Iot__V1__AlertTriggered alert = IOT__V1__ALERT_TRIGGERED__INIT;
    alert.alert_id = alert_id;
    alert.sensor_id = reading->sensor_id;
    alert.severity = fabs (score) >= 2 * self->options.z ? "critical" : "warning";
    alert.message = message;
    alert.index = reading->index;
    if (service_emit (self->service, "alerts", "AlertTriggered", reading->sensor_id, correlation,
                      anomaly_id, 1, &alert.base, NULL, NULL))
        return;
    zhashx_update (self->flagged, correlation, "");
    self->anomalies++;
}

static void
s_handle (void *arg, int subscription, const shoal_event_t *event)
{
    (void) subscription;
    s_detector_t *self = (s_detector_t *) arg;
    Iot__V1__Reading *reading =
        (Iot__V1__Reading *) service_unpack (S_PROGRAM, &iot__v1__reading__descriptor, event);
    if (!reading)
        return;
    if (!*reading->sensor_id || !isfinite (reading->value)) {
        fprintf (stderr, S_PROGRAM ": skipped a reading without sensor id or value\n");
        iot__v1__reading__free_unpacked (reading, NULL);
        return;
    }
    char correlation[200];
    snprintf (correlation, sizeof correlation, "%s/%llu", reading->sensor_id,
              (unsigned long long) reading->index);
    if (zhashx_lookup (self->flagged, *shoal_event_correlation_id (event)
                                          ? shoal_event_correlation_id (event)
                                          : correlation)) {
        iot__v1__reading__free_unpacked (reading, NULL);
        return; //  flagged before: a redelivery
    }
    self->readings++;
    s_window_t *window = (s_window_t *) zhashx_lookup (self->windows, reading->sensor_id);
    if (!window) {
        window = (s_window_t *) calloc (1, sizeof (s_window_t));
        zhashx_insert (self->windows, reading->sensor_id, window);
    }
    double mean = 0, stddev = 0, score = 0;
    bool anomaly = false;
    if (!isnan (self->options.threshold)) {
        score = reading->value / self->options.threshold;
        anomaly = reading->value > self->options.threshold;
        if (window->count)
            s_stats (window, &mean, &stddev);
    }
    else if (window->count >= self->options.warmup) {
        s_stats (window, &mean, &stddev);
        double floor = stddev > self->options.min_stddev ? stddev : self->options.min_stddev;
        score = (reading->value - mean) / floor;
        anomaly = fabs (score) >= self->options.z;
    }
    if (anomaly)
        s_flag (self, event, reading, mean, stddev, score);
    else {
        window->values[window->next] = reading->value;
        window->next = (window->next + 1) % self->options.window;
        if (window->count < self->options.window)
            window->count++;
    }
    iot__v1__reading__free_unpacked (reading, NULL);
}

static int
s_option (void *arg, int argc, char **argv, int index)
{
    s_options_t *options = (s_options_t *) arg;
    const char *option = argv[index];
    if (!streq (option, "--window") && !streq (option, "--warmup") && !streq (option, "--z")
        && !streq (option, "--threshold") && !streq (option, "--min-stddev"))
        return 0;
    if (index + 1 >= argc) {
        fprintf (stderr, S_PROGRAM ": %s needs a value\n", option);
        return -1;
    }
    char *end;
    double value = strtod (argv[index + 1], &end);
    bool bad = end == argv[index + 1] || *end || !isfinite (value);
    if (streq (option, "--window")) {
        bad |= value < 2 || value > S_WINDOW_MAX;
        options->window = (size_t) value;
    }
    else if (streq (option, "--warmup")) {
        bad |= value < 2 || value > S_WINDOW_MAX;
        options->warmup = (size_t) value;
    }
    else if (streq (option, "--z")) {
        bad |= value <= 0;
        options->z = value;
    }
    else if (streq (option, "--threshold"))
        options->threshold = value;
    else {
        bad |= value < 0;
        options->min_stddev = value;
    }
    if (bad) {
        fprintf (stderr, S_PROGRAM ": bad value '%s' for %s\n", argv[index + 1], option);
        return -1;
    }
    return 2;
}

int
main (int argc, char **argv)
{
    service_config_t config = {.program = S_PROGRAM,
                               .usage = "       [--window N] [--warmup N] [--z Z] [--threshold V] "
                                        "[--min-stddev S]"};
    s_detector_t self = {0};
    self.options =
        (s_options_t){.window = 50, .warmup = 20, .z = 6.0, .threshold = NAN, .min_stddev = 0.01};
    service_parse (&config, argc, argv, s_option, &self.options);
    if (self.options.warmup > self.options.window) {
        fprintf (stderr, S_PROGRAM ": --warmup cannot exceed --window\n");
        return 2;
    }
    self.windows = zhashx_new ();
    zhashx_set_destructor (self.windows, (zhashx_destructor_fn *) zstr_free);
    self.flagged = zhashx_new ();
    int rc = service_read_own_log (config.data_dir, "anomalies", s_fold, &self);
    if (rc == 0)
        self.service = service_new (&config);
    if (self.service) {
        fprintf (stderr, S_PROGRAM ": %zu anomalies flagged before, rebuilt from the log\n",
                 zhashx_size (self.flagged));
        shoal_node_subscribe_durable (service_node (self.service), "detector.readings", "readings",
                                      "Reading");
        rc = service_run (self.service, s_handle, NULL, NULL, &self);
        fprintf (stderr, S_PROGRAM ": stopping; %llu readings judged, %llu anomalies\n",
                 (unsigned long long) self.readings, (unsigned long long) self.anomalies);
        service_destroy (&self.service);
    }
    else
        rc = -1;
    zhashx_destroy (&self.windows);
    zhashx_destroy (&self.flagged);
    return rc ? 1 : 0;
}
