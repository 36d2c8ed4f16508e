/*  =========================================================================
    sensor - the IoT pipeline's source: readings at a configurable rate

    Publishes Reading events (proto/iot.proto) on stream "readings": a
    baseline plus bounded noise from a seeded generator, and at the
    indices given by --inject (or every --inject-every readings) an
    anomaly, the baseline plus --spike, marked `injected` so that tests and
    demos can tell which readings the detector must flag.

    Two ways to publish:
    - as a full node (--data DIR, common options): the readings are in the
      sensor's own log, served to the mesh; after --count readings the node
      stays up, serving its history, until SIGINT or SIGTERM;
    - as a thin client (--through ENDPOINT, a node's ROUTER): each reading
      goes in a PublishRequest (proto/shoal.proto) and is recorded by that
      node as origin; the sensor exits after --count readings.

    Each reading's key is the sensor id and its correlation id
    "SENSOR/INDEX", which the detector's anomaly and alert carry on.

        sensor --data DIR [--sensor-id ID] [--rate HZ] [--count N] [--inject I,J,...]
               [--inject-every N] [--baseline V] [--noise A] [--spike D] [--seed S]
        sensor --through ENDPOINT ... (same options, no node of its own)
    ========================================================================= */

#include "iot.pb-c.h"
#include "service.h"
#include "shoal.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PROGRAM "sensor"
#define S_MAX_INJECT 256

typedef struct {
    const char *sensor_id;         //  --sensor-id, default the node name or "sensor"
    double rate;                   //  --rate readings per second
    uint64_t count;                //  --count, 0 = until stopped
    uint64_t inject[S_MAX_INJECT]; //  --inject indices
    size_t inject_count;           //  entries in inject
    uint64_t inject_every;         //  --inject-every N, 0 = off
    double baseline;               //  --baseline
    double noise;                  //  --noise amplitude: values in baseline +- noise
    double spike;                  //  --spike added to an injected reading
    uint64_t seed;                 //  --seed of the noise
    const char *through;           //  --through ENDPOINT: thin client
} s_options_t;

static int
s_double (const char *text, double *value)
{
    char *end;
    *value = strtod (text, &end);
    return end == text || *end ? -1 : 0;
}

static int
s_u64 (const char *text, uint64_t *value)
{
    char *end;
    if (*text == '-')
        return -1;
    *value = strtoull (text, &end, 10);
    return end == text || *end ? -1 : 0;
}

static int
s_option (void *arg, int argc, char **argv, int index)
{
    s_options_t *options = (s_options_t *) arg;
    const char *option = argv[index];
    const char *known[] = {"--sensor-id", "--rate",  "--count", "--inject", "--inject-every",
                           "--baseline",  "--noise", "--spike", "--seed",   "--through"};
    bool mine = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        mine |= streq (option, known[i]);
    if (!mine)
        return 0;
    if (index + 1 >= argc) {
        fprintf (stderr, S_PROGRAM ": %s needs a value\n", option);
        return -1;
    }
    const char *value = argv[index + 1];
    int bad = 0;
    if (streq (option, "--sensor-id"))
        options->sensor_id = value;
    else if (streq (option, "--through"))
        options->through = value;
    else if (streq (option, "--rate"))
        bad = s_double (value, &options->rate) || options->rate <= 0 || options->rate > 1e6;
    else if (streq (option, "--count"))
        bad = s_u64 (value, &options->count);
    else if (streq (option, "--inject-every"))
        bad = s_u64 (value, &options->inject_every);
    else if (streq (option, "--baseline"))
        bad = s_double (value, &options->baseline);
    else if (streq (option, "--noise"))
        bad = s_double (value, &options->noise) || options->noise < 0;
    else if (streq (option, "--spike"))
        bad = s_double (value, &options->spike);
    else if (streq (option, "--seed"))
        bad = s_u64 (value, &options->seed);
    else if (streq (option, "--inject")) {
        char copy[4096];
        snprintf (copy, sizeof copy, "%s", value);
        for (char *item = strtok (copy, ","); item && !bad; item = strtok (NULL, ",")) {
            bad = options->inject_count == S_MAX_INJECT
                  || s_u64 (item, &options->inject[options->inject_count]);
            options->inject_count++;
        }
    }
    if (bad) {
        fprintf (stderr, S_PROGRAM ": bad value '%s' for %s\n", value, option);
        return -1;
    }
    return 2;
}

//  xorshift64*: the noise is reproducible from the seed.
static double
s_uniform (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double) ((*state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static bool
s_injected (const s_options_t *options, uint64_t index)
{
    if (options->inject_every && index % options->inject_every == 0)
        return true;
    for (size_t i = 0; i < options->inject_count; i++)
        if (options->inject[i] == index)
            return true;
    return false;
}

//  Fills the reading of index; correlation gets "SENSOR/INDEX".
static void
s_reading (const s_options_t *options, uint64_t *state, uint64_t index, Iot__V1__Reading *reading,
           char *correlation, size_t size)
{
    iot__v1__reading__init (reading);
    reading->sensor_id = (char *) options->sensor_id;
    reading->index = index;
    reading->injected = s_injected (options, index);
    double noise = options->noise * (2 * s_uniform (state) - 1);
    reading->value = options->baseline + (reading->injected ? options->spike : noise);
    reading->time_ns = shoal_time_ns ();
    snprintf (correlation, size, "%s/%llu", options->sensor_id, (unsigned long long) index);
}

//  Sleeps until reading `sent` is due at `rate` since start; false when interrupted.
static bool
s_pace (int64_t start, uint64_t sent, double rate)
{
    int64_t due = start + (int64_t) ((double) sent * 1000.0 / rate);
    while (!service_interrupted () && zclock_mono () < due)
        zclock_sleep ((int) (due - zclock_mono () < 20 ? due - zclock_mono () : 20));
    return !service_interrupted ();
}

static int
s_run_node (const service_config_t *config, s_options_t *options)
{
    service_t *service = service_new (config);
    if (!service)
        return 1;
    uint64_t state = options->seed, index = 0;
    int64_t start = zclock_mono ();
    int rc = 0;
    while ((options->count == 0 || index < options->count) && rc == 0
           && s_pace (start, index, options->rate)) {
        index++;
        Iot__V1__Reading reading;
        char correlation[200];
        s_reading (options, &state, index, &reading, correlation, sizeof correlation);
        rc = service_emit (service, "readings", "Reading", options->sensor_id, correlation, NULL, 1,
                           &reading.base, NULL, NULL);
        if (rc == 0 && (index % 16 == 0 || index == options->count))
            rc = service_commit (service);
    }
    if (rc == 0)
        rc = service_commit (service);
    printf ("sensor: %llu readings published\n", (unsigned long long) index);
    fflush (stdout);
    //  Stay up to serve the readings' history until told to stop.
    while (rc == 0 && !service_interrupted ())
        zclock_sleep (50);
    service_destroy (&service);
    return rc ? 1 : 0;
}

typedef struct {
    uint64_t acked;  //  PublishAcks received
    uint64_t errors; //  error responses
} s_thin_t;

static void
s_thin_reply (void *arg, const uint8_t *data, size_t size)
{
    s_thin_t *thin = (s_thin_t *) arg;
    Shoal__V1__Response *response = shoal__v1__response__unpack (NULL, size, data);
    if (response && response->body_case == SHOAL__V1__RESPONSE__BODY_PUBLISH_ACK)
        thin->acked++;
    else {
        fprintf (stderr, S_PROGRAM ": publish refused: %s\n",
                 response && response->body_case == SHOAL__V1__RESPONSE__BODY_ERROR
                     ? response->error->message
                     : "bad response");
        thin->errors++;
    }
    if (response)
        shoal__v1__response__free_unpacked (response, NULL);
}

//  One PublishRequest frame for reading `index`. Caller frees.
static uint8_t *
s_publish_request (s_options_t *options, uint64_t *state, uint64_t index, size_t *size_p)
{
    Iot__V1__Reading reading;
    char correlation[200];
    s_reading (options, state, index, &reading, correlation, sizeof correlation);
    size_t payload_size = 0;
    uint8_t *payload = service_pack (&reading.base, &payload_size);
    //  The event id (idempotency key) makes a resent reading a duplicate.
    shoal_event_t *id_source = shoal_event_new ();
    shoal_event_generate_id (id_source);
    Shoal__V1__Event event = SHOAL__V1__EVENT__INIT;
    event.stream = "readings";
    event.type = "Reading";
    event.key = (char *) options->sensor_id;
    event.correlation_id = correlation;
    event.schema_version = 1;
    event.content_type = "application/x-protobuf";
    event.id.data = (uint8_t *) shoal_event_id (id_source);
    event.id.len = SHOAL_ID_SIZE;
    event.payload.data = payload;
    event.payload.len = payload_size;
    Shoal__V1__PublishRequest publish = SHOAL__V1__PUBLISH_REQUEST__INIT;
    publish.event = &event;
    publish.wait_durable = true;
    Shoal__V1__Request request = SHOAL__V1__REQUEST__INIT;
    request.request_id = index;
    request.body_case = SHOAL__V1__REQUEST__BODY_PUBLISH;
    request.publish = &publish;
    uint8_t *data = service_pack (&request.base, size_p);
    shoal_event_destroy (&id_source);
    free (payload);
    return data;
}

static int
s_run_thin (s_options_t *options)
{
    if (options->count == 0) {
        fprintf (stderr, S_PROGRAM ": --through needs --count N\n");
        return 2;
    }
    uint64_t state = options->seed, index = 0;
    s_thin_t thin = {0, 0};
    //  In chunks of a tenth of a second, so that Ctrl-C stops it soon.
    size_t chunk = options->rate >= 10 ? (size_t) (options->rate / 10) : 1;
    uint8_t **requests = (uint8_t **) calloc (chunk, sizeof (uint8_t *));
    size_t *sizes = (size_t *) calloc (chunk, sizeof (size_t));
    int rc = 0;
    while (index < options->count && rc == 0 && !service_interrupted ()) {
        size_t count = 0;
        while (count < chunk && index < options->count) {
            index++;
            requests[count] = s_publish_request (options, &state, index, &sizes[count]);
            count++;
        }
        int rate = options->rate >= 1 ? (int) options->rate : 1;
        if (service_client_requests (options->through, requests, sizes, count, 64, rate, 10000,
                                     s_thin_reply, &thin))
            rc = 1;
        for (size_t i = 0; i < count; i++)
            free (requests[i]);
    }
    free (requests);
    free (sizes);
    printf ("sensor: %llu readings published through %s\n", (unsigned long long) thin.acked,
            options->through);
    return rc || thin.errors ? 1 : 0;
}

int
main (int argc, char **argv)
{
    s_options_t options = {.rate = 10, .baseline = 20.0, .noise = 0.5, .spike = 15.0};
    service_config_t config = {
        .program = S_PROGRAM,
        .usage = "       [--sensor-id ID] [--rate HZ] [--count N] [--inject I,J,...]\n"
                 "       [--inject-every N] [--baseline V] [--noise A] [--spike D] [--seed S]\n"
                 "       sensor --through ENDPOINT --count N ... (thin client: no --data)"};
    //  A thin client has no data directory of its own.
    for (int i = 1; i + 1 < argc; i++)
        if (streq (argv[i], "--through"))
            config.data_dir = "";
    service_parse (&config, argc, argv, s_option, &options);
    if (!options.sensor_id)
        options.sensor_id = streq (config.name, S_PROGRAM) ? "sensor" : config.name;
    if (!options.seed)
        for (const char *p = options.sensor_id; *p; p++)
            options.seed = options.seed * 31 + (uint8_t) *p + 1;
    if (options.through) {
        service_catch_signals ();
        return s_run_thin (&options);
    }
    return s_run_node (&config, &options);
}
